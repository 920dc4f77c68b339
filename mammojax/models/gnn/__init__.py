"""Graph layers: GENConv / DeepGCN res+, GCN, GCNII, GAT, ECC, attention pooling.

A port of PyG's ``GENConv``, ``SoftmaxAggregation``, ``MessageNorm`` and
``DeepGCNLayer`` (DeeperGCN, Li et al. 2020) with the same numerics in
float32, plus the ogbn_proteins-style stack used by MT-GCN (a bare first
conv, res+ blocks, then ``act(norm_0(x))`` and dropout). One concept per
module; every public name is re-exported here (``__all__``), so
``gnn.<name>`` works for all of them:

- ``ops``: pure graph math (segment softmax, softmax aggregation with its
  custom VJP and ``_softmax_aggregation_reference``, sum / mean / max
  aggregation, message norm).
- ``norms``: node-feature norm layers with torch's defaults.
- ``genconv``: ``SoftmaxAggregation``, ``MessageNorm``, ``MLP``, ``GENConv``.
- ``deepgcn``: ``DeepGCNLayer`` and the ``DeepGCN`` stack.
- ``gcn``: ``gcn_norm``, ``GCNConv`` and ``GCN2Conv`` (GCNII).
- ``gat``: ``gat_attention`` and ``GATConv``.
- ``nnconv``: ``NNConv`` (ECC, edge-conditioned convolution).
- ``pooling``: ``AttentionalAggregation`` (global attention pooling).
- ``dense``: ``DenseStack``, the Linear / ReLU MLPs those take.
- ``convert``: ``params_from_torch_state_dict`` (PyG state_dict -> flax).

Conventions (docs/architecture.md): ``senders`` = source j = PyG
``edge_index[0]``, ``receivers`` = target i = ``edge_index[1]``; messages are
aggregated at the receivers. Static sizes (``num_nodes``) come from array
shapes. Graph math is in pure functions; the linen modules only declare
parameters and call them.

Param trees (flax kernels are torch ``weight.T``):

* ``GENConv``: ``lin_src/lin_dst/lin_edge {kernel[, bias]}`` (only when the
  input / edge width differs from ``out_channels``), ``aggr_module {t: [1]}``
  (``learn_t``), ``msg_norm {scale: [1]}`` (``learn_msg_scale``),
  ``mlp {lin_0, norm_0, lin_1, ...}``; BatchNorm statistics live in
  ``batch_stats`` under the same paths.
* ``DeepGCNLayer``: ``conv {...}``, ``norm {scale, bias}``.
* ``GCNConv``: ``lin {kernel}``, ``bias``; ``GCN2Conv``: ``weight1``
  (+ ``weight2``), as torch (not transposed); ``GATConv``: ``lin``,
  ``att_src``, ``att_dst`` ``[1, H, C]``, ``bias``, ``res``; ``NNConv``:
  ``nn {lin_0, ...}``, ``lin``, ``bias``; ``AttentionalAggregation``:
  ``gate_nn {lin_0, ...}``, ``nn {lin_0, ...}``.
* ``DeepGCN``: ``node_encoder``, ``edge_encoder`` (optional),
  ``layer_0 {conv, norm}`` (its norm is only used by the head), and the
  res+ layers 1..L-1 either stacked on a leading axis under ``blocks``
  (``scan=True``) or as ``blocks_1 ... blocks_{L-1}`` (``scan=False``).

``params_from_torch_state_dict`` converts a PyG state_dict (as numpy arrays)
into these trees, so mammojax itself never imports torch.
"""

from mammojax.models.gnn.convert import params_from_torch_state_dict
from mammojax.models.gnn.deepgcn import DeepGCN
from mammojax.models.gnn.deepgcn import DeepGCNLayer
from mammojax.models.gnn.dense import DenseStack
from mammojax.models.gnn.gat import GATConv
from mammojax.models.gnn.gat import gat_attention
from mammojax.models.gnn.gcn import GCN2Conv
from mammojax.models.gnn.gcn import GCNConv
from mammojax.models.gnn.gcn import gcn2_combine
from mammojax.models.gnn.gcn import gcn_norm
from mammojax.models.gnn.gcn import gcn_propagate
from mammojax.models.gnn.nnconv import NNConv
from mammojax.models.gnn.nnconv import nnconv_messages
from mammojax.models.gnn.pooling import AttentionalAggregation
from mammojax.models.gnn.pooling import attentional_aggregation
from mammojax.models.gnn.genconv import GENConv
from mammojax.models.gnn.genconv import MLP
from mammojax.models.gnn.genconv import MessageNorm
from mammojax.models.gnn.genconv import SoftmaxAggregation
from mammojax.models.gnn.ops import AffineEdges
from mammojax.models.gnn.ops import Array
from mammojax.models.gnn.ops import _softmax_aggregation_reference
from mammojax.models.gnn.ops import aggregate
from mammojax.models.gnn.ops import dropout
from mammojax.models.gnn.ops import materialize_edges
from mammojax.models.gnn.ops import max_aggregation
from mammojax.models.gnn.ops import mean_aggregation
from mammojax.models.gnn.ops import message_norm
from mammojax.models.gnn.ops import segment_softmax
from mammojax.models.gnn.ops import softmax_aggregation
from mammojax.models.gnn.ops import sum_aggregation

__all__ = [
    'Array',
    'AttentionalAggregation',
    'DeepGCN',
    'DeepGCNLayer',
    'DenseStack',
    'GATConv',
    'GCN2Conv',
    'GCNConv',
    'GENConv',
    'NNConv',
    'attentional_aggregation',
    'gat_attention',
    'gcn2_combine',
    'gcn_norm',
    'gcn_propagate',
    'nnconv_messages',
    'MLP',
    'MessageNorm',
    'SoftmaxAggregation',
    '_softmax_aggregation_reference',  # the autodiff spec; used by tests.
    'aggregate',
    'max_aggregation',
    'mean_aggregation',
    'message_norm',
    'params_from_torch_state_dict',
    'segment_softmax',
    'softmax_aggregation',
    'sum_aggregation',
]
