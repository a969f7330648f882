"""C05's arms: the scalings compared, by key and display name (shared by measuring and drawing;
plain data, imports nothing)."""

SCALES = ("sqrt_dk", "sqrt_dmodel", "none")
SCALE_NAMES = {"sqrt_dk": "÷√d_k", "sqrt_dmodel": "÷√d_model", "none": "no scaling"}
