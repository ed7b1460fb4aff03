import matplotlib

matplotlib.use("Agg")

from diagnosis import build_network, make_engine  # noqa: E402
from diagnosis.logs.scoring import ScoreSummary, score_frame  # noqa: E402
from diagnosis.logs.simulate import simulate  # noqa: E402
from diagnosis.plotting import plot_reliability, plot_topk  # noqa: E402


def test_plots_return_axes(webshop):
    import matplotlib.pyplot as plt

    net = build_network(webshop)
    _, stats, _ = score_frame(net, make_engine(net), simulate(webshop, 300, rng=1))
    summary = ScoreSummary.from_stats(stats)
    ax = plot_reliability(summary)
    assert ax.get_xlim() == (0, 1) and "ECE" in ax.get_title()
    assert len(ax.collections) == 1  # the bins
    ax = plot_topk(summary.to_dict())
    assert len(ax.patches) == 10  # 5 bars per level
    plt.close("all")
