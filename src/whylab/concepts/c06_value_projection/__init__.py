"""C06: queries and keys decide where to look; values (W_v) decide what is fetched.

The notes' example: for "먹었다" the query matches the key of "사과를", and the value supplies the
meaning of "사과". To separate the two roles we need a task where the matched thing and the
fetched thing differ: a key–value retrieval. Each context token is a (key, value) pair — its id
encodes both — and the final token asks for a key; the answer is the value stored with that key.
So the query must match the *key part* of one context token and output its *value part*.

The roles are then separated by intervention on a trained one-layer, one-head model (the primary test):
- change the value part of the matched pair: attention should stay put, the output should follow;
- change its key part: attention should move away (control), clearly more than for the value.
(Replacing W_v by a random matrix is shown as an illustration only: in one layer the attention
weights cannot depend on W_v, so "attention unchanged" holds by construction.)
And an ablation over seeds, paired: learned W_v vs V = X at one head and without the output
projection W_o, on the task and as a corpus LM. With several heads V = X confines each head to its
slice of X, and with W_o kept W_o·W_v is a single matrix, so both would confound the ablation; the
task arm "V = X with W_o" shows the second confound.
"""

CLAIM_ID = "C06"
