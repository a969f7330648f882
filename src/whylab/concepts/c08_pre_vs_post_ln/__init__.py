"""C08: LayerNorm before attention and the FFN (Pre-LN) trains better than after them (Post-LN).

Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture") show that in the
original Post-LN transformer the gradients of the parameters near the output are large at
initialisation (their Figure 3: the gradient norm grows with the layer index for Post-LN and stays
flat for Pre-LN), so Post-LN needs a learning-rate warm-up, while Pre-LN trains without one.

The decision is pre-registered where they predict the difference: deeper stacks (``primary_cells``,
6 and 12 layers by default), a high learning rate, no warm-up and no gradient clipping, with their
Xavier-like initialisation (std 1/√d_model). In each primary cell both placements are trained from
the same seeds (same initial weights, same batches); the per-seed loss differences are tested
(paired t) and Holm-corrected across the cells. The gradient norm per block at initialisation
(their Figure 3 trend) is measured per seed and enters the verdict. The same cells with a linear
warm-up (``warmup_depths``) decide the warm-up part: does warm-up rescue Post-LN, and does Pre-LN
need it? Both paired by seed and Holm-corrected with the primary cells.
"""

CLAIM_ID = "C08"
