"""C06's arms, by display name: (key, W_v learned, W_o kept) of the task runs and (key, W_v
learned) of the LM runs, all at one head. Shared by measuring and drawing; plain data.

With W_o kept, W_o·W_v is one matrix, so V = X with W_o kept is as expressive as a learned W_v
(the confound of a V = X ablation that keeps W_o).
"""

TASK_ARMS = {
    "learned W_v (no W_o)": ("w_v", True, False),
    "V = X (no W_o)": ("v_is_x", False, False),
    "V = X with W_o": ("v_is_x_wo", False, True),
}
LM_ARMS = {"learned W_v (no W_o)": ("w_v", True), "V = X (no W_o)": ("v_is_x", False)}
LM_ARM_KEYS = dict(LM_ARMS.values())  # LM arm key -> W_v learned (else frozen at W_v = I: V = X)
