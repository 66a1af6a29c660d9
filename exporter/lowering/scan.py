"""The fast lowering: one recurrent module as hoisted input projections plus a Scan over time.

Shared scaffolding (every cell), per layer k, direction d and gate group g (GROUPS below),
S = size of h:
    x [seq, batch, I_k] padded with ones → [seq, batch, I_k + 1] → [seq·batch, I_k + 1]
        · [W_{d,g} ‖ hoisted bias_{d,g}]ᵀ → xw_{d,g} [seq, batch, |g|·H]
        one Gemm per direction and gate group for every time step at once (the bulk of the
        FLOPs); the bias rides in the product on a column of ones; the reverse direction is
        fed flip(x)
    Scan over time, states per direction (h, and c for LSTM); the reverse direction steps
    backwards either by the Scan's own scan_input_directions / scan_output_directions (flip
    "scan": no copy; onnx's reference evaluator does not implement them) or over inputs (and
    outputs) flipped in time around the Scan (flip "slice" / "gather", _flip)
    with sequence_lens: m[t, b] = t < len[b]; every state s ← s + m·(s_new − s), y = m·h
    y_d [seq, batch, S] → Concat over directions → [seq, batch, dirs·S]  (torch's layout)
Per-cell step bodies (gates in ONNX order, weights packed by weights.py); each gate group is
one act(xw_g + h·R_gᵀ), which onnxruntime runs as one fused Gemm per step:
    RNN   h ← f(xw + h·Rᵀ)
    LSTM  i, o, f = σ(xw_iof + h·R_iofᵀ);  c̃ = tanh(xw_c + h·R_cᵀ);
          c ← f⊙c + i⊙c̃;  h ← o⊙tanh(c)
          with proj_size: h ← (o⊙tanh(c))·W_hrᵀ  (the ONNX LSTM op cannot express this)
    GRU   z = σ(xw_z + h·R_zᵀ);  r = σ(xw_r + h·R_rᵀ);  n = tanh(xw_n + r⊙(h·R_nᵀ + b_hn));
          h ← n + z⊙(h − n)
          only b_ih and the z/r part of b_hh are hoisted: b_hn must stay inside r⊙(…),
          where torch applies the reset gate (cells.py)
The same graph I/O as the RNN-op lowering (stack.py), so either can stand behind the contract.
Why each choice, with the numbers: docs/perf/NOTES.md.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..spec import RNNSpec
from ..weights import LayerWeights
from ..cells import ACTIVATION
from .builder import GraphBuilder, split_states

__all__ = ["lower_rnn_scan"]


def _zeros_state(b: GraphBuilder, shape: str, size: int, tag: str, lead: int = 0) -> str:
    """[batch, size] zeros ([lead, batch, size] with a lead), batch read off x's shape
    [seq, batch, I] at run time."""
    batch = b.op("Slice", [shape, b.const("one", np.array([1], np.int64)),
                           b.const("two", np.array([2], np.int64))])
    dims = [batch, b.const(f"size_{tag}", np.array([size], np.int64))]
    if lead:
        dims.insert(0, b.const(f"lead_{lead}", np.array([lead], np.int64)))
    dims = b.op("Concat", dims, axis=0)
    return b.op("ConstantOfShape", [dims],
                value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))


def _mask(b: GraphBuilder, shape: str, seq_lens: str) -> str:
    """m [seq, batch, 1] float: 1 where t < sequence_lens[b], else 0."""
    seq = b.op("Gather", [shape, b.const("zero_i", np.array(0, np.int64))])
    t = b.op("Range", [b.const("start", np.array(0, np.int64)), seq,
                       b.const("delta", np.array(1, np.int64))])                     # [seq]
    t = b.op("Unsqueeze", [t, b.const("axis1", np.array([1], np.int64))])            # [seq, 1]
    lens = b.op("Cast", [seq_lens], to=TensorProto.INT64)                            # [batch]
    valid = b.op("Less", [t, lens])                                                  # [seq, batch]
    m = b.op("Cast", [valid], to=TensorProto.FLOAT)
    return b.op("Unsqueeze", [m, b.const("axis2", np.array([2], np.int64))])         # [seq, batch, 1]


# ------------------------------------------------------------------ per-cell step bodies
# The gate groups: gates (ONNX order) computed by one hoisted Gemm and one Gemm per step each,
# so that the step never splits its input slice and each activation fuses into its Gemm.
# Measured (docs/perf/NOTES.md): one group per activation beats one Gemm for all gates.
GROUPS: Mapping[str, tuple[tuple[int, ...], ...]] = MappingProxyType({
    "rnn": ((0,),),
    "lstm": ((0, 1, 2), (3,)),         # σ(i, o, f) | tanh(c̃)
    "gru": ((0,), (1,), (2,)),         # σ(z) | σ(r) | n, whose r ⊙ (…) must stay in the body
})
# Both directions of a bidirectional layer as one recurrence over a [2, batch, ·] state, one
# batched MatMul per gate group and step over [2, S, |g|·H] weights (_layer_batched), or as two
# independent recurrences side by side in the same Scan (_layer). Measured per cell on
# onnxruntime 1.32 CPU (scripts/perf_variants.py directions; docs/perf/NOTES.md): batched is
# 1.4-1.6× slower at batch 8 on one thread (onnxruntime fuses neither the batched MatMul nor
# its Add and activation into one Gemm) and within -11…+15% at batch 256: kept for no cell.
BATCHED_DIRECTIONS: Mapping[str, bool] = MappingProxyType({"rnn": False, "lstm": False,
                                                           "gru": False})
# Each step takes the body builder, xw (one [(2,) batch, |g|·H] slice per group), the states
# {"h": [(2,) batch, S], "c": [(2,) batch, H]} and the direction's (or the two directions'
# stacked) weight names; returns the new states. Every op broadcasts over the leading 2.


def _split(sub: GraphBuilder, t: str, sizes: list[int]) -> list[str]:
    """t [(2,) batch, ΣH] → one tensor per size along the last axis."""
    if len(sizes) == 1:
        return [t]
    outs = [sub.fresh("part") for _ in sizes]
    return sub.node("Split", [t, sub.const(f"split_{'_'.join(map(str, sizes))}",
                                           np.array(sizes, np.int64))], outs, axis=-1)


def _gate(sub: GraphBuilder, acts: list[str], xw: str, h: str, R_T: str, H: int) -> list[str]:
    """acts[j](xw + h·R_gᵀ) for one gate group [batch, |g|·H], split into its gates [batch, H].
    With one activation for the whole group, MatMul + Add + activation is what onnxruntime
    fuses into one Gemm per step; mixed activations split first into runs of one activation
    each (LSTM's i, o, f | c̃: one Sigmoid over three gates, one Tanh)."""
    pre = sub.op("Add", [xw, sub.op("MatMul", [h, R_T])])
    runs: list[list] = []                                   # [activation, gates in the run]
    for a in acts:
        if runs and runs[-1][0] == a:
            runs[-1][1] += 1
        else:
            runs.append([a, 1])
    if len(runs) == 1:
        return _split(sub, sub.op(acts[0], [pre]), [H] * len(acts))
    gates: list[str] = []
    for (a, n), part in zip(runs, _split(sub, pre, [n * H for _, n in runs])):
        gates += _split(sub, sub.op(a, [part]), [H] * n)
    return gates


def _rnn_step(sub: GraphBuilder, xw: list[str], st: dict, wt: dict, spec: RNNSpec) -> dict:
    (h,) = _gate(sub, [ACTIVATION[spec.nonlinearity]], xw[0], st["h"], wt["R_T"][0],
                 spec.hidden_size)
    return {"h": h}


_LSTM_ACTS = ("Sigmoid", "Sigmoid", "Sigmoid", "Tanh")     # i, o, f, c̃ (ONNX's defaults)


def _lstm_step(sub: GraphBuilder, xw: list[str], st: dict, wt: dict, spec: RNNSpec) -> dict:
    H, gates = spec.hidden_size, []
    for g, xw_g, R_T in zip(GROUPS["lstm"], xw, wt["R_T"]):     # ONNX order i, o, f, c̃
        gates += _gate(sub, [_LSTM_ACTS[j] for j in g], xw_g, st["h"], R_T, H)
    i, o, f, c_hat = gates
    c = sub.op("Add", [sub.op("Mul", [f, st["c"]]), sub.op("Mul", [i, c_hat])])   # [batch, H]
    h = sub.op("Mul", [o, sub.op("Tanh", [c])])                                   # [batch, H]
    if "P_T" in wt:
        h = sub.op("MatMul", [h, wt["P_T"]])                                      # [batch, S]
    return {"h": h, "c": c}


def _gru_step(sub: GraphBuilder, xw: list[str], st: dict, wt: dict, spec: RNNSpec) -> dict:
    H, gates = spec.hidden_size, []
    for g, xw_g, R_T in zip(GROUPS["gru"][:-1], xw, wt["R_T"]):       # the last group is n
        gates += _gate(sub, ["Sigmoid"] * len(g), xw_g, st["h"], R_T, H)
    z, r = gates                                                          # ONNX order z, r
    hn = sub.op("MatMul", [st["h"], wt["R_T"][-1]])                       # [batch, H]
    if "b_hn" in wt:
        hn = sub.op("Add", [hn, wt["b_hn"]])
    n = sub.op("Tanh", [sub.op("Add", [xw[-1], sub.op("Mul", [r, hn])])])
    return {"h": sub.op("Add", [n, sub.op("Mul", [z, sub.op("Sub", [st["h"], n])])])}


_STEPS: dict[str, Callable[..., dict]] = {"rnn": _rnn_step, "lstm": _lstm_step,
                                          "gru": _gru_step}


def _rows(group: tuple[int, ...], H: int) -> np.ndarray:
    """The rows of a [G·H, ·] weight that belong to a gate group."""
    return np.concatenate([np.arange(g * H, (g + 1) * H) for g in group])


def _hoisted_bias(w: LayerWeights, d: int, spec: RNNSpec) -> np.ndarray | None:
    """The bias folded into the input projection: b_ih + b_hh, except GRU's b_hn."""
    if w.B is None:
        return None
    GH = w.B.shape[1] // 2
    b_ih, b_hh = w.B[d, :GH], w.B[d, GH:].copy()
    if spec.cell == "gru":
        b_hh[2 * spec.hidden_size:] = 0.0        # b_hn stays inside r ⊙ (h·R_nᵀ + b_hn)
    return b_ih + b_hh


def _direction_weights(b: GraphBuilder, w: LayerWeights, d: int, k: int,
                       spec: RNNSpec) -> dict:
    """The initializers a direction's step reads: R_gᵀ [S, |g|·H] per gate group (transposed
    for h·Rᵀ as a MatMul), GRU's b_hn, a projected LSTM's W_hrᵀ."""
    H = spec.hidden_size
    wt: dict = {"R_T": [b.initializer(f"RT_l{k}_d{d}_g{j}",
                                      np.ascontiguousarray(w.R[d][_rows(g, H)].T))
                        for j, g in enumerate(GROUPS[spec.cell])]}
    if spec.cell == "gru" and w.B is not None:
        GH = w.B.shape[1] // 2
        wt["b_hn"] = b.initializer(f"b_hn_l{k}_d{d}", w.B[d, GH + 2 * H:].copy())
    if w.P is not None:
        wt["P_T"] = b.initializer(f"PT_l{k}_d{d}", np.ascontiguousarray(w.P[d].T))  # [H, S]
    return wt


def _masked(sub: GraphBuilder, new: dict, old: dict, m: str) -> dict:
    """Each state s ← old + m·(new − old): the step's state where m is 1, the previous one
    where the step is padding (m 0; the per-step output is then m·h, zeros)."""
    return {s: sub.op("Add", [old[s], sub.op("Mul", [m, sub.op("Sub", [new[s], old[s]])])])
            for s in new}


def _body(b: GraphBuilder, spec: RNNSpec, weights: list[dict], masked: bool) -> onnx.GraphProto:
    """Scan body. Inputs: the states of every direction (h_d[, c_d]), then the scan slices
    xw_{d,g} [batch, |g|·H] per direction and gate group (and m_d [batch, 1]). Outputs: the new
    states, then per-step outputs y_d [batch, S]. Unmasked, y_d is an Identity of the new h:
    listing a state twice as a graph output is valid ONNX but measured slower on onnxruntime."""
    sub = b.child()
    cell, D, groups = spec.cell_info, len(weights), GROUPS[spec.cell]
    sizes = spec.state_sizes()
    st_in = [{s: sub.fresh(f"{s}{d}") for s in cell.states} for d in range(D)]
    xw = [[sub.fresh(f"xw{d}_g{j}") for j in range(len(groups))] for d in range(D)]
    m = [sub.fresh(f"m{d}") for d in range(D)] if masked else []
    new_states, ys = [], []
    for d in range(D):
        new = _STEPS[cell.name](sub, xw[d], st_in[d], weights[d], spec)
        if masked:
            new = _masked(sub, new, st_in[d], m[d])
            ys.append(sub.op("Mul", [new["h"], m[d]]))
        else:
            ys.append(sub.op("Identity", [new["h"]]))
        new_states.append(new)

    def vi(name: str, size: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", size])
    H = spec.hidden_size
    inputs = ([vi(st_in[d][s], sizes[s]) for d in range(D) for s in cell.states]
              + [vi(n, len(g) * H) for d in range(D) for n, g in zip(xw[d], groups)]
              + [vi(n, 1) for n in m])
    outputs = ([vi(new_states[d][s], sizes[s]) for d in range(D) for s in cell.states]
               + [vi(n, spec.state_size) for n in ys])
    return helper.make_graph(sub.nodes, sub.fresh("scan_body"), inputs, outputs,
                             initializer=sub.initializers)


def _flip(b: GraphBuilder, t: str, how: str = "slice") -> str:
    """Reverse axis 0 (time). "slice": Slice with step −1. "gather": Gather over the indices
    (n−1) − Range(0, n, 1) — tract refuses a negative-step Slice over a symbolic dimension
    (tract-scan-reverse-slice-refused) and misinfers the length of a Range with a negative
    step, so the indices count up and are subtracted."""
    if how == "slice":
        return b.op("Slice", [t, b.const("flip_start", np.array([-1], np.int64)),
                              b.const("flip_end", np.array([np.iinfo(np.int64).min], np.int64)),
                              b.const("flip_axes", np.array([0], np.int64)),
                              b.const("flip_step", np.array([-1], np.int64))])
    n = b.op("Gather", [b.op("Shape", [t]), b.const("zero_i", np.array(0, np.int64))],
             axis=0)                                                            # scalar
    one = b.const("one_i", np.array(1, np.int64))
    steps = b.op("Range", [b.const("start", np.array(0, np.int64)), n, one])   # [n]
    return b.op("Gather", [t, b.op("Sub", [b.op("Sub", [n, one]), steps])], axis=0)


def _ones_column(b: GraphBuilder, x: str) -> str:
    """x [seq, batch, I] → [seq, batch, I + 1], the last column all ones: it carries the bias
    through the input projection (_projections)."""
    return b.op("Pad", [x, b.const("pad_one_after", np.array([0, 0, 0, 0, 0, 1], np.int64)),
                        b.const("one_f", np.array(1.0, np.float32))])


def _with_bias_column(w: LayerWeights, d: int, spec: RNNSpec) -> np.ndarray:
    """Direction d's W [G·H, I_k], with the hoisted bias as one more column [G·H, I_k + 1]
    when the layer has one (the column of ones multiplies it)."""
    bias = _hoisted_bias(w, d, spec)
    return w.W[d] if bias is None else np.concatenate([w.W[d], bias[:, None]], axis=1)


def _projections(b: GraphBuilder, x2d: str, w: LayerWeights, d: int, k: int, spec: RNNSpec,
                 edges: dict) -> list[str]:
    """xw_{d,g} = x·W_{d,g}ᵀ + hoisted bias for every step at once, one per gate group g:
    x2d [seq·batch, I_k (+1)] → Gemm (W_{d,g} [|g|·H, I_k (+1)], transB) → [seq·batch, |g|·H]
    → [seq, batch, |g|·H].
    With a bias, x2d carries a column of ones and W_{d,g} the bias as its last column, so the
    bias is added inside the product: a Gemm with C (or MatMul + Add) writes the whole
    projection twice more, a third of its time at I = 32 on onnxruntime (docs/perf/NOTES.md)."""
    H, W = spec.hidden_size, _with_bias_column(w, d, spec)              # [G·H, I_k (+1)]
    xws = []
    for j, g in enumerate(GROUPS[spec.cell]):
        W_g = b.initializer(f"W_l{k}_d{d}_g{j}", W[_rows(g, H)])
        xws.append(b.op("Reshape", [b.op("Gemm", [x2d, W_g], transB=1),
                                    edges["seq_batch_by"][len(g) * H]]))
    return xws


def _layer(b: GraphBuilder, x: str, init: dict[str, str | None], w: LayerWeights,
           spec: RNNSpec, k: int, edges: dict, y_name: str | None
           ) -> tuple[str, dict[str, list[str]]]:
    """One layer: x [seq, batch, I_k] → (y [seq, batch, dirs·S], {state: finals per dir
    [batch, ·], or one [2, batch, ·] for both (named in edges["stacked"])}). The reverse
    direction runs backwards in the Scan (flip "scan") or forwards over flip(x), its output
    flipped back."""
    D, cell = spec.num_directions, spec.cell_info
    if D == 2 and BATCHED_DIRECTIONS[spec.cell]:
        return _layer_batched(b, x, init, w, spec, k, edges, y_name)
    I_k = w.W.shape[2]
    if w.B is not None:             # the column of ones that carries the bias (_projections)
        x = _ones_column(b, x)                                          # [seq, batch, I_k + 1]
        I_k += 1
    flat = b.const(f"flat_l{k}", np.array([-1, I_k], np.int64))
    by_scan = edges["flip"] == "scan"        # the Scan steps the reverse direction backwards
    x2d = b.op("Reshape", [x, flat])           # [seq, batch, I_k (+1)] → [seq·batch, I_k (+1)]
    x2ds = [x2d] if D == 1 else [x2d, x2d if by_scan else   # the reverse direction reads flip(x)
                                 b.op("Reshape", [_flip(b, x, edges["flip"]), flat])]
    xws = [_projections(b, x2d_d, w, d, k, spec, edges)
           for d, x2d_d in enumerate(x2ds)]      # per direction: [seq, batch, |g|·H] per g
    starts = []                                                         # Scan's state inputs
    for d in range(D):
        for s in cell.states:
            if init[s] is None:                                         # zero state
                starts.append(edges["zeros"][s])
            else:                                                       # [dirs, batch, ·] → [batch, ·]
                starts.append(b.op("Gather", [init[s], b.const(f"dir{d}", np.array(d, np.int64))],
                                   axis=0))
    weights = [_direction_weights(b, w, d, k, spec) for d in range(D)]
    masks = edges["masks"]
    body = _body(b, spec, weights, masks is not None)
    finals = {s: [b.fresh(f"{s}T_l{k}_d{d}") for d in range(D)] for s in cell.states}
    ordered = [finals[s][d] for d in range(D) for s in cell.states]
    ys = [y_name] if D == 1 and y_name else [b.fresh(f"y_l{k}_d{d}") for d in range(D)]
    scan_inputs = [t for xw_d in xws for t in xw_d] + (masks[:D] if masks else [])
    directions = {}
    if D == 2 and by_scan:          # direction d's scan inputs and output, in body order
        G = len(xws[0])
        directions = {"scan_input_directions": [0] * G + [1] * G + ([0, 1] if masks else []),
                      "scan_output_directions": [0, 1]}
    b.node("Scan", starts + scan_inputs, ordered + ys, body=body,
           num_scan_inputs=len(scan_inputs), **directions)
    if D == 1:
        return ys[0], finals
    y_b = ys[1] if by_scan else _flip(b, ys[1], edges["flip"])
    y = b.op("Concat", [ys[0], y_b], y_name, axis=2)                    # [seq, batch, dirs·S]
    return y, finals


def _stacked(b: GraphBuilder, parts: list[str], axis: int) -> str:
    """Concat of the parts, each given a new axis `axis` (2 parts → that axis is 2 long)."""
    ax = b.const(f"axes{axis}", np.array([axis], np.int64))
    return b.op("Concat", [b.op("Unsqueeze", [p, ax]) for p in parts], axis=axis)


def _batched_projections(b: GraphBuilder, x: str, xr: str, Ws: list[np.ndarray], k: int,
                         spec: RNNSpec, edges: dict) -> list[str]:
    """xw_g [seq, 2, batch, |g|·H] per gate group: direction 0 from x, 1 from xr = flip(x)
    (both [seq, batch, I_k + 1]); Ws[d] [G·H, I_k + 1] (bias as the last column). Two large
    GEMMs as one [2, seq·batch, I_k + 1] MatMul, then a transposing copy to the scan layout
    (measured faster than x stacked per step, [seq, 2, batch, I_k + 1]·[2, I_k + 1, ·]: seq·2
    small GEMMs)."""
    H, out = spec.hidden_size, []
    flat = b.const(f"flat_l{k}", np.array([-1, Ws[0].shape[1]], np.int64))
    x2 = _stacked(b, [b.op("Reshape", [t, flat]) for t in (x, xr)], 0)  # [2, seq·batch, I_k + 1]
    for j, g in enumerate(GROUPS[spec.cell]):
        W2 = b.initializer(f"W2_l{k}_g{j}", np.stack([W[_rows(g, H)].T for W in Ws]))  # [2, I_k + 1, w]
        dims = b.op("Concat", [b.const("lead_2", np.array([2], np.int64)),
                               edges["seq_batch_by"][len(g) * H]], axis=0)       # [2, seq, batch, w]
        xw = b.op("Reshape", [b.op("MatMul", [x2, W2]), dims])   # [2, seq·batch, w] → [2, seq, batch, w]
        out.append(b.op("Transpose", [xw], perm=[1, 0, 2, 3]))   # → [seq, 2, batch, w]
    return out


def _layer_batched(b: GraphBuilder, x: str, init: dict[str, str | None], w: LayerWeights,
                   spec: RNNSpec, k: int, edges: dict, y_name: str | None
                   ) -> tuple[str, dict[str, list[str]]]:
    """A bidirectional layer as one recurrence over both directions (BATCHED_DIRECTIONS):
    states [2, batch, ·] (direction 0 forward; 1 reverse, stepping over flip(x)), per step one
    batched MatMul [2, batch, S] · [2, S, |g|·H] per gate group; the same result as _layer."""
    cell, H = spec.cell_info, spec.hidden_size
    Ws = [_with_bias_column(w, d, spec) for d in range(2)]              # [G·H, I_k (+1)] each
    if w.B is not None:             # the column of ones that carries the bias (_projections)
        x = _ones_column(b, x)                                          # [seq, batch, I_k + 1]
    if edges["flip"] == "scan":       # the stacked [seq, 2, batch, ·] inputs share one order
        raise NotImplementedError("batched directions flip time around the Scan: use flip "
                                  "'slice' or 'gather'")
    xws = _batched_projections(b, x, _flip(b, x, edges["flip"]), Ws, k, spec, edges)
    sizes = spec.state_sizes()
    starts = [init[s] if init[s] is not None                            # [2, batch, ·]
              else _zeros_state(b, edges["shape"], sizes[s], f"{s}2", lead=2)
              for s in cell.states]
    wt: dict = {"R_T": [b.initializer(f"RT2_l{k}_g{j}", np.stack(
        [w.R[d][_rows(g, H)].T for d in range(2)])) for j, g in enumerate(GROUPS[spec.cell])]}
    if spec.cell == "gru" and w.B is not None:
        GH = w.B.shape[1] // 2
        wt["b_hn"] = b.initializer(f"b_hn2_l{k}", w.B[:, None, GH + 2 * H:].copy())  # [2, 1, H]
    if w.P is not None:
        wt["P_T"] = b.initializer(f"PT2_l{k}", np.ascontiguousarray(
            w.P.transpose(0, 2, 1)))                                    # [2, H, S]
    masked = edges["masks"] is not None
    sub = b.child()
    st = {s: sub.fresh(f"{s}2") for s in cell.states}
    xw = [sub.fresh(f"xw2_g{j}") for j in range(len(xws))]
    m = sub.fresh("m2")
    new = _STEPS[cell.name](sub, xw, st, wt, spec)
    if masked:
        new = _masked(sub, new, st, m)
        h_out = sub.op("Mul", [new["h"], m])
    else:
        h_out = new["h"]
    ys = [sub.op("Gather", [h_out, sub.const(f"dir{d}", np.array(d, np.int64))], axis=0)
          for d in range(2)]                                            # [batch, S] each

    def vi(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
    groups = GROUPS[spec.cell]
    body = helper.make_graph(
        sub.nodes, sub.fresh("scan_body"),
        [vi(st[s], [2, "batch", sizes[s]]) for s in cell.states]
        + [vi(n, [2, "batch", len(g) * H]) for n, g in zip(xw, groups)]
        + ([vi(m, [2, "batch", 1])] if masked else []),
        [vi(new[s], [2, "batch", sizes[s]]) for s in cell.states]
        + [vi(n, ["batch", spec.state_size]) for n in ys], initializer=sub.initializers)
    scan_inputs = list(xws)
    if masked:
        if "mask2" not in edges:                                        # [seq, 2, batch, 1]
            edges["mask2"] = _stacked(b, edges["masks"][:2], 1)
        scan_inputs.append(edges["mask2"])
    finals = {s: [b.fresh(f"{s}T_l{k}")] for s in cell.states}          # [2, batch, ·]
    edges["stacked"].update(f for fs in finals.values() for f in fs)
    y_f, y_b = b.fresh(f"y_l{k}_d0"), b.fresh(f"y_l{k}_d1")
    b.node("Scan", starts + scan_inputs, [finals[s][0] for s in cell.states] + [y_f, y_b],
           body=body, num_scan_inputs=len(scan_inputs))
    y = b.op("Concat", [y_f, _flip(b, y_b, edges["flip"])], y_name, axis=2)  # [seq, batch, 2·S]
    return y, finals


def _stack_finals(b: GraphBuilder, finals: list[str], name: str, stacked: set[str]) -> None:
    """per direction [batch, ·] (or, named in `stacked`, per layer [2, batch, ·]) →
    [layers·dirs, batch, ·]."""
    axes0 = b.const("axes0", np.array([0], np.int64))
    if len(finals) == 1:
        b.op("Identity" if finals[0] in stacked else "Unsqueeze",
             [finals[0]] + ([] if finals[0] in stacked else [axes0]), name)
    else:
        b.op("Concat", [f if f in stacked else b.op("Unsqueeze", [f, axes0]) for f in finals],
             name, axis=0)


def lower_rnn_scan(b: GraphBuilder, spec: RNNSpec, layers: list[LayerWeights], *, x: str,
                   h0: str | None, out: str, h_n: str, c0: str | None = None,
                   c_n: str | None = None, seq_lens: str | None = None,
                   flip: str = "slice") -> None:
    """Same contract as stack.lower_rnn, computed with MatMul + Scan instead of RNN nodes;
    `flip`: how the reverse direction reverses time ("scan": the Scan's own directions;
    "slice" / "gather": _flip)."""
    cell = spec.cell_info
    if spec.batch_first:
        x = b.op("Transpose", [x], perm=[1, 0, 2])              # [batch, seq, I] → [seq, batch, I]
    shape = b.op("Shape", [x])                                  # [seq, batch, I], read once
    seq_batch = b.op("Slice", [shape, b.const("zero_1d", np.array([0], np.int64)),
                               b.const("two", np.array([2], np.int64))])         # [seq, batch]
    sizes = spec.state_sizes()
    given = {"h": h0, "c": c0}
    widths = sorted({len(g) * spec.hidden_size for g in GROUPS[spec.cell]})
    seq_batch_by = {w: b.op("Concat", [seq_batch, b.const(f"width_{w}", np.array([w], np.int64))],
                            axis=0) for w in widths}            # gate-group width → [seq, batch, w]
    edges = {"seq_batch_by": seq_batch_by,
             "zeros": {s: _zeros_state(b, shape, sizes[s], s) for s in cell.states
                       if given[s] is None},
             "masks": None, "flip": flip, "shape": shape, "stacked": set()}
    if seq_lens:
        mask = _mask(b, shape, seq_lens)
        edges["masks"] = ([mask] if not spec.bidirectional
                          else [mask, mask if flip == "scan" else _flip(b, mask, flip)])
    inits = {s: split_states(b, spec, given[s], 0, f"{s}0") for s in cell.states}
    finals: dict[str, list[str]] = {s: [] for s in cell.states}
    last = spec.num_layers - 1
    for k, w in enumerate(layers):
        y_name = out if k == last and not spec.batch_first else None
        x, f = _layer(b, x, {s: inits[s][k] for s in cell.states}, w, spec, k, edges, y_name)
        for s in cell.states:
            finals[s] += f[s]
    if spec.batch_first:
        b.op("Transpose", [x], out, perm=[1, 0, 2])            # [seq, batch, ·] → [batch, seq, ·]
    names = {"h": h_n, "c": c_n}
    for s in cell.states:
        _stack_finals(b, finals[s], names[s], edges["stacked"])
