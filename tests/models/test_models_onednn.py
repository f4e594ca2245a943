"""oneDNN linears in inference mode against ``F.linear`` (and the erf GELU)."""

import pytest
import torch
import torch.nn.functional as F

import models.onednn as onednn


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_equals_f_linear_on_contiguous_and_sliced_inputs(gelu, bias):
    torch.manual_seed(0)
    weight, b = torch.randn(48, 32), torch.randn(48) if bias else None
    rows = onednn.MIN_ROWS
    x = torch.randn(2, rows + 40, 32)
    for inputs in (x, x[:, -1:], x[:, 5 : rows + 5], torch.randn(2, rows, 64)[..., 32:]):
        want = F.linear(inputs, weight, b)
        want = F.gelu(want) if gelu else want
        with torch.inference_mode():
            got = onednn.linear(inputs, weight, b, gelu=gelu)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_onednn_path_only_in_inference_mode_for_float32_and_long_inputs():
    x = torch.randn(onednn.MIN_ROWS, 8)
    with torch.no_grad():
        assert not onednn.usable(x)
    with torch.inference_mode():
        assert onednn.usable(x) == onednn.AVAILABLE
        assert not onednn.usable(x.double())
        assert not onednn.usable(x[1:]) and not onednn.usable(x[None, -1:])
