"""Start a recogniser from a trained one that is narrower or knows fewer characters.

A trained network is the most expensive thing the project has (hours of CPU), so a larger
architecture should not start from scratch.  :func:`transfer_weights` copies every weight of
the source into the matching slice of the new network and zeroes the connections from the new
channels, units and projection features into the old ones: at step 0 the wider network
computes exactly the source's log-probabilities (Net2Net-style function-preserving widening,
Chen et al., ICLR 2016, with zero instead of split outgoing weights).  The new units still
learn: their outgoing weights get gradients from the first step.  Characters added to the
charset get fresh output units whose bias is the old characters' median, so they start as
likely as a typical character.

What may differ between source and target: ``conv_filters``, ``projection`` (both non-zero),
``rnn_units`` (all >= the source's) and the number of classes (>=, the old ones first).
Everything else (blocks, pools, kernel, downsampling, RNN type and depth) must be the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htr_tf.errors import ConfigError

__all__ = ["transfer_weights", "check_growable"]

_SAME_FIELDS = ("conv_pool", "conv_kernel", "conv_per_block", "downsample", "separable_blocks", "batch_norm",
                "rnn_type", "rnn_layers")


def check_growable(source: Any, target: Any) -> None:
    """Raise :class:`ConfigError` unless ``target`` (a RecognizerConfig) widens ``source``."""
    diff = [f"{k}: {getattr(source, k)!r} -> {getattr(target, k)!r}" for k in _SAME_FIELDS
            if getattr(source, k) != getattr(target, k)]
    if len(source.conv_filters) != len(target.conv_filters):
        diff.append(f"conv_filters: {len(source.conv_filters)} blocks -> {len(target.conv_filters)}")
    elif any(t < s for s, t in zip(source.conv_filters, target.conv_filters)):
        diff.append(f"conv_filters narrower: {list(source.conv_filters)} -> {list(target.conv_filters)}")
    if target.separable_blocks and target.conv_filters != source.conv_filters:
        diff.append("conv_filters of a network with separable blocks cannot change")
    if bool(source.projection) != bool(target.projection) or target.projection < source.projection:
        diff.append(f"projection: {source.projection} -> {target.projection}")
    if source.rnn_layers and target.rnn_units < source.rnn_units:
        diff.append(f"rnn_units: {source.rnn_units} -> {target.rnn_units}")
    if diff:
        raise ConfigError("the model cannot start from the --init bundle (only wider conv_filters, "
                          "projection and rnn_units, or more characters, are supported): " + "; ".join(diff))


def _dense(new: list[np.ndarray], old: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """Kernel ``[in, out]`` (+ bias): old inputs at ``rows``, old outputs first, new inputs cut off."""
    k = new[0].copy()
    n_out = old[0].shape[1]
    k[:, :n_out] = 0.0
    k[np.ix_(rows, np.arange(n_out))] = old[0]
    out = [k]
    if len(new) > 1:
        b = new[1].copy()
        b[..., :n_out] = old[1]
        out.append(b)
    return out


def _rnn(new: list[np.ndarray], old: list[np.ndarray], rows: np.ndarray, gates: int) -> list[np.ndarray]:
    """One direction of an LSTM/GRU: ``kernel [in, G*u]``, ``recurrent [u, G*u]``, ``bias``."""
    u_old, u_new = old[1].shape[0], new[1].shape[0]
    cols_old = np.concatenate([g * u_old + np.arange(u_old) for g in range(gates)])
    cols_new = np.concatenate([g * u_new + np.arange(u_old) for g in range(gates)])
    k, r, b = (w.copy() for w in new)
    k[:, cols_new] = 0.0
    k[np.ix_(rows, cols_new)] = old[0][:, cols_old]
    r[:, cols_new] = 0.0
    r[np.ix_(np.arange(u_old), cols_new)] = old[1][:, cols_old]
    b[..., cols_new] = old[2][..., cols_old]
    return [k, r, b]


def transfer_weights(net: Any, config: Any, source: Any, source_config: Any) -> int:
    """Set ``net`` (built from ``config``) to compute what ``source`` computes; see the module
    docstring.  Returns the number of classes added to the output layer."""
    check_growable(source_config, config)

    def pair(name: str) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        layer = net.get_layer(name)
        return layer, layer.get_weights(), source.get_layer(name).get_weights()

    rows = np.arange(1)  # where each of the source's channels lies in the target's tensor
    for i, _ in enumerate(config.conv_filters):
        for j in range(config.conv_per_block):
            layer, new, old = pair(f"block{i + 1}_conv{j + 1}")
            if i in config.separable_blocks:  # conv widths unchanged (check_growable): copied as they are
                layer.set_weights(old)
            else:
                k = new[0].copy()
                n_out = old[0].shape[-1]
                k[..., :n_out] = 0.0
                k[:, :, rows, :n_out] = old[0]
                layer.set_weights([k] + ([_copy_prefix(new[1], old[1])] if len(new) > 1 else []))
            rows = np.arange(source_config.conv_filters[i])
            if config.batch_norm:
                layer, new, old = pair(f"block{i + 1}_bn{j + 1}")
                layer.set_weights([_copy_prefix(n, o) for n, o in zip(new, old)])
    height = net.get_layer("frames").output.shape[-1] // config.conv_filters[-1]
    c_new, c_old = config.conv_filters[-1], source_config.conv_filters[-1]
    rows = np.array([h * c_new + rows[c] for h in range(height) for c in range(c_old)])
    if config.projection:
        layer, new, old = pair("projection")
        layer.set_weights(_dense(new, old, rows))
        rows = np.arange(source_config.projection)
    gates = 4 if config.rnn_type == "lstm" else 3
    for k in range(config.rnn_layers):
        layer, new, old = pair(f"bi{config.rnn_type}{k + 1}")
        half = len(new) // 2
        layer.set_weights(_rnn(new[:half], old[:half], rows, gates) + _rnn(new[half:], old[half:], rows, gates))
        u_old = source_config.rnn_units
        rows = np.concatenate([np.arange(u_old), config.rnn_units + np.arange(u_old)])
    layer, new, old = pair("logits")
    added = new[0].shape[1] - old[0].shape[1]
    if added < 0:
        raise ConfigError(f"the model has {new[0].shape[1]} classes, the --init bundle {old[0].shape[1]}: "
                          "a charset may only grow")
    kernel, bias = _dense(new, old, rows)
    if added:
        bias[old[1].shape[0]:] = np.median(old[1][1:]) if old[1].shape[0] > 1 else 0.0
    layer.set_weights([kernel, bias])
    return added


def _copy_prefix(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    out = new.copy()
    out[:old.shape[0]] = old
    return out
