"""GPU readiness without a GPU: the frontier model with every switch on is one graph for
torch.compile(fullgraph=True, dynamic=False), with looping off and on, in eval and in training mode."""

from __future__ import annotations

import pytest
import torch

from tests.frontier.helpers import randomised, tiny_frontier

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("looping", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_frontier_model_compiles_without_graph_breaks(looping, training):
    torch._dynamo.reset()
    model = randomised(tiny_frontier(fused_ce=True, doc_max_len=8)).train(training)
    model.looping_active = looping
    ids = torch.cat((torch.tensor([1]), torch.randint(2, 64, (23,)), torch.tensor([1]),
                     torch.randint(2, 64, (7,))))
    x, y = ids[None, :-1], ids[None, 1:]
    explanation = torch._dynamo.explain(model)(x, y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.no_grad():
        assert torch.allclose(compiled(x, y), model(x, y), rtol=1e-5, atol=1e-5)
