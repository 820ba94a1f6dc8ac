"""Expected library chatter stays out of the rendered chapters (it carries the reader's
absolute paths), and real warnings still show."""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from llmrec_lib import backbones as B
from llmrec_lib import text as T

MEAN_RESIZING = "The new embeddings will be initialized from a multivariate normal"


@contextlib.contextmanager
def _resize_log():
    """The messages transformers' resize logger emits in the block. Its logger does not
    propagate to the root logger (so no caplog), and warning_once remembers what it
    already said: that memory is cleared first, or the test would prove nothing."""
    messages: list[str] = []

    class Records(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logging.Logger.warning_once.cache_clear()
    handler = Records(logging.DEBUG)
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_adding_markers_logs_no_mean_resizing_message():
    bb = B.load_backbone("tiny-llama", device="cpu")
    with _resize_log() as ours, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert T.init_marker_embeddings(bb) > 0  # the matrix grew
    assert not [m for m in ours if m.startswith(MEAN_RESIZING)], ours
    assert not caught, [str(w.message) for w in caught]
    # control: transformers does say it when the library does not ask for quiet
    other = B.load_backbone("tiny-llama", device="cpu")
    with _resize_log() as theirs:
        rows = other.model.get_input_embeddings().num_embeddings
        other.model.resize_token_embeddings(rows + 1)
    assert any(m.startswith(MEAN_RESIZING) for m in theirs), theirs


def test_lora_on_a_backbone_hides_only_the_checkpointing_deprecation():
    from llmrec_lib.encoders import DualEncoder, EncoderConfig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        DualEncoder(EncoderConfig(backbone="tiny-llama", n_layers=None), device="cpu")
        warnings.warn("a real warning", FutureWarning)  # others still reach the reader
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "is_gradient_checkpointing" in m], messages
    assert "a real warning" in messages
