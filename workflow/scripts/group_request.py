"""What each job group asks SLURM for, computed by Snakemake's own GroupResources on the DAG
a cluster run would build (nothing runs, nothing is submitted).

    python workflow/scripts/group_request.py CORES [CONFIGFILE ...]   # CORES: a number, or none

CORES is the `cores:` of your cluster profile (a group's parallel jobs are fitted into it);
none shows what a group asks for without one (every parallel job at once).
"""

from __future__ import annotations

import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.resources import Resources
from snakemake.settings.types import (
    ConfigSettings,
    DAGSettings,
    ExecutionSettings,
    GroupSettings,
    OutputSettings,
    ResourceSettings,
)
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry


def main(argv: list[str]) -> None:
    cores = None if argv[0] == "none" else int(argv[0])
    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(
                cores=cores, nodes=1, default_resources=Resources.default("bare")
            ),
            config_settings=ConfigSettings(configfiles=[Path(p) for p in argv[1:]]),
            snakefile=Path("Snakefile"),
        )
        w = workflow_api._workflow
        w.group_settings = GroupSettings(group_components={"quant": 1, "tokenization": 1})
        w.dag_settings = DAGSettings()
        w.execution_settings = ExecutionSettings()
        w._executor_plugin = ExecutorPluginRegistry().get_plugin("slurm")  # groups exist off-local only
        w._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        w._build_dag()
        w.dag.update_groups()
        seen = set()
        for job in w.dag.needrun_jobs():
            group = w.dag.get_job_group(job)
            if group is not None and group.groupid not in seen:
                seen.add(group.groupid)
                r = dict(group.resources)
                print(
                    f"{group.groupid}: {len(group.jobs)} jobs, cpus={r['_cores']} mem_mb={r['mem_mb']} runtime={r['runtime']} min"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
