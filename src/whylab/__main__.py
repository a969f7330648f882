from whylab.cli import main

raise SystemExit(main())
