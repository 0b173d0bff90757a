"""jaxvis.plots and jaxvis.figures: what each figure shows, measured on the drawn artists."""

import dataclasses

import jax
import matplotlib.colors
import numpy as np
import pytest

from jaxvis import figures, models, plots
from jaxvis.occlusion import OcclusionMaps
from jaxvis.plots import deconvnet, occlusion as occlusion_plots
from jaxvis.plots import saliency as saliency_plots


@pytest.fixture(scope="module")
def mnist():
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, *model.input_shape)))
    return model, params, x


def _inside(fig, extent) -> bool:
    """Whether a display-space box lies within the figure's canvas (one pixel of slack)."""
    w, h = fig.canvas.get_width_height()
    return extent.x0 >= -1 and extent.y0 >= -1 and extent.x1 <= w + 1 and extent.y1 <= h + 1


def test_field_crop_is_the_window_clipped_to_the_image():
    image = np.arange(20 * 30).reshape(20, 30, 1)
    for window in [(-3, -4, 10, 10), (15, 25, 10, 10), (5, 6, 3, 4), (-10, 28, 40, 40)]:
        top, left, h, w = window
        rows = [r for r in range(top, top + h) if 0 <= r < 20]
        cols = [c for c in range(left, left + w) if 0 <= c < 30]
        crop = plots.field_crop(image, window)
        np.testing.assert_array_equal(crop[..., 0], np.asarray([[r * 30 + c for c in cols] for r in rows]))


def test_strongest_figure_crops_each_projection_to_its_units_field(mnist):
    model, params, x = mnist
    fig = figures.strongest_figure(model, params, x, ["relu1", "relu4"], ["a", "b"], "strongest")
    _, trace = model.apply(params, x)
    cells = [ax for ax in fig.axes if ax.images]
    assert len(cells) == 2 * 3
    for n in range(2):
        for k, layer in enumerate(["relu1", "relu4"]):
            act = np.asarray(trace.activations[layer][n])
            c = int(np.argmax(act.reshape(-1, act.shape[-1]).max(axis=0)))
            i, j = np.unravel_index(np.argmax(act[..., c]), act.shape[:2])  # first maximum, as argmax scans
            field = model.receptive_field(layer)
            top, left = field.start[0] + i * field.jump[0], field.start[1] + j * field.jump[1]
            rows = min(28, top + field.size[0]) - max(0, top)
            cols = min(28, left + field.size[1]) - max(0, left)
            shown = cells[n * 3 + 1 + k].images[0].get_array()
            assert shown.shape[:2] == (rows, cols), (layer, n, shown.shape, (rows, cols))
    assert cells[1].get_title().startswith(f"relu1 (field {model.receptive_field('relu1').size[0]}x")
    fig.canvas.draw()
    assert _inside(fig, fig.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.dpi_scale_trans))


def _maps(model, labels_NPQ, prob_NPQ):
    n, p, q = prob_NPQ.shape
    zeros = np.zeros((n,), np.float32)
    return OcclusionMaps(rows_P=np.arange(p) * 4, cols_Q=np.arange(q) * 4, patch=(4, 4), prob_NPQ=prob_NPQ,
                         label_NPQ=labels_NPQ, feature_NPQ=None, channel_N=None, base_prob_N=zeros + 0.97,
                         base_label_N=np.zeros((n,), np.int32), score_NPQ=prob_NPQ, base_score_N=zeros,
                         attribution_NHW=np.zeros((n, *model.input_shape[:2]), np.float32),
                         computed_NPQ=np.ones_like(prob_NPQ, bool), score="probability")


def test_fig7_scales_panel_d_to_the_map_and_names_each_present_class_in_its_own_colour():
    model = models.build("mnist_cnn", num_classes=40)
    names = [f"a rather long class name {k}" for k in range(40)]
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.91, 0.96, (2, 7, 7)).astype(np.float32)
    labels = rng.integers(0, 40, (2, 7, 7))
    labels[1] = np.where(labels[1] % 2, 3, 5)  # the second image: two classes only
    x = np.zeros((2, *model.input_shape), np.float32)
    fig = occlusion_plots.fig7(model, x, [3, 5], _maps(model, labels, prob), names, target="predicted class")
    axes = np.asarray(fig.axes[:6]).reshape(2, 3)  # panels a, d, e (then the colour bars)
    for n in range(2):
        image = axes[n, 1].images[0]
        assert image.get_clim() == (pytest.approx(prob[n].min()), pytest.approx(prob[n].max()))
        legend = axes[n, 2].get_legend()
        present = np.unique(labels[n])
        assert [t.get_text() for t in legend.get_texts()] == [names[c][:17] + "\u2026" for c in present]
        colours = {matplotlib.colors.to_hex(h.get_facecolor()) for h in legend.legend_handles}
        assert len(colours) == len(present)
        # each position is drawn in its class's legend colour
        image_rgba = axes[n, 2].images[0].to_rgba(axes[n, 2].images[0].get_array())
        by_label = dict(zip(present, (h.get_facecolor() for h in legend.legend_handles)))
        for (i, j), c in np.ndenumerate(labels[n]):
            np.testing.assert_allclose(image_rgba[i, j], by_label[c], atol=1e-6)
    assert axes[0, 1].get_title() == "(d) p(predicted class)"
    assert fig.axes[6].get_ylabel().startswith(f"from its min {prob[0].min():.3g} to max {prob[0].max():.3g}")


def test_fig7_needs_a_name_per_class():
    model = models.build("mnist_cnn")
    maps = _maps(model, np.zeros((1, 2, 2), int), np.ones((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="3 class names for a model of 10 classes"):
        occlusion_plots.fig7(model, np.zeros((1, 28, 28, 1)), [0], maps, ["a", "b", "c"])
    with pytest.raises(ValueError, match="give panel \\(c\\)'s projections"):
        occlusion_plots.fig7(model, np.zeros((1, 28, 28, 1)), [0],
                             dataclasses.replace(maps, feature_NPQ=np.ones((1, 2, 2)), channel_N=np.zeros(1, int)),
                             [str(k) for k in range(10)])


def test_one_column_grid_keeps_long_titles_inside_the_figure():
    title = "Strongest map of each layer, projected alone with the deconvnet rule, cropped to its field " * 2
    fig = plots.grid([[np.zeros((5, 5, 1))], [np.ones((5, 5, 1))]], ["first", "second"],
                     ["a column label that is much wider than its cell"], title=title)
    fig.canvas.draw()
    texts = [fig._suptitle] + [ax.title for ax in fig.axes]
    for text in texts:
        assert _inside(fig, text.get_window_extent()), (text.get_text(), text.get_window_extent())
    assert "\n" in fig._suptitle.get_text() and "\n" in fig.axes[0].get_title()
    assert fig.get_figwidth() <= plots.TITLE_WIDTH + 1e-9


def test_filters_sheet_fits_its_count_with_little_blank_canvas():
    assert [deconvnet.sheet_columns(k) for k in (96, 64, 32, 7, 1)] == [12, 8, 8, 4, 1]
    kernel = np.asarray(jax.random.normal(jax.random.key(0), (11, 11, 3, 96)))
    fig = deconvnet.filters(kernel)
    fig.canvas.draw()
    image = fig.axes[0].images[0]
    box = image.get_window_extent()
    w, h = fig.canvas.get_width_height()
    blank = 1 - box.width * box.height / (w * h)
    assert blank < 0.08, blank
    assert image.get_array().shape[:2] == (8 * 12 - 1, 12 * 12 - 1)  # 8 rows of 12, one-pixel gaps
    assert _inside(fig, fig._suptitle.get_window_extent())


def test_class_models_grid_titles_each_model_with_its_class_name():
    model = models.build("mnist_cnn", num_classes=12)
    names = [f"class number {k}" for k in range(12)]
    images = {"a": np.zeros((12, 28, 28, 1)), "b": np.ones((12, 28, 28, 1))}
    probs = {p: np.linspace(0, 1, 12) for p in images}
    fig = saliency_plots.class_models_grid(model, images, probs, names, per_row=5)
    cells = [ax for ax in fig.axes if ax.images]
    assert len(cells) == 24
    assert [ax.get_title().replace("\n", " ") for ax in cells[:12]] == names
    assert [ax.get_xlabel() for ax in cells[12:]] == [f"p={v:.3f}" for v in probs["b"]]
