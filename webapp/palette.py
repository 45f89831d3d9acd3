"""One colour per scheduler mode, the same on every chart and page (pure functions, no Streamlit).

Colours are fixed per value, never by the order a chart happens to meet its series in, so
``continuous_static`` has one colour on the Compare, Sweeps and Plan pages alike. They come from
the Okabe-Ito palette (told apart with the common colour-vision deficiencies; its yellow is left
out, too pale for a line on white). :data:`CATEGORIES` is keyed by category name, so a chart that
colours by something else later (a router, a GPU type) adds its values there and calls the same
functions.

A series label that starts with a mode (``multi_bin_dynamic · rate 5``, ``continuous_static, B = 16``)
takes that mode's colour (:func:`label_colors`); labels that share a mode get darker and lighter
shades of it, and lines get a dash of their own (:func:`label_dash`). Legends sit under the plot,
in as many columns as the narrowest chart fits, and never cut a label (:func:`legend`).
"""
from __future__ import annotations

import re

import altair as alt

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
CATEGORIES: dict[str, dict[str, str]] = {  # every mode of core.config.MODES (a test checks)
    "mode": dict(zip(("continuous_dynamic", "static_fifo", "multi_bin_dynamic", "multi_bin_fixed",
                      "dynamic_no_bins", "continuous_static", "continuous_multi_bin"), OKABE_ITO)),
}
# series that name no value of the category (a metric, "all"): Tableau's greys and muted tones
OTHER = ("#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#9C755F", "#BAB0AC", "#76B7B2", "#EDC948")
DASHES = ([1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3])
# px a legend may take: it starts at the plot's left edge, and the plot of a chart in one of two columns
# at a 900 px window (Compare, Plan, Sweeps) is about 275 px wide (measured in Chromium)
NARROWEST = 250
CHAR_PX, SYMBOL_PX = 6.0, 40  # a legend label's character, and its symbol and padding (Vega's 11 px labels)
PLOT_AND_AXES = 340  # px: a chart's plot (>= 260) with its title and axes, the legend left out
PART = " · "  # what joins the parts of a run or series label (webapp.labels, sweep_charts.series_label)
LEGEND_ROW = 30  # px per row of legend entries (a point symbol's row; a line's is 20)


def colors(category: str = "mode") -> dict[str, str]:
    """Value -> colour for a category (``mode``; a router or GPU type later)."""
    return dict(CATEGORIES[category])


def color_of(value: str, category: str = "mode") -> str:
    return CATEGORIES[category][value]


def scale(category: str = "mode") -> alt.Scale:
    """The fixed colour scale of a category: every value of it in the domain, its colour in the range."""
    table = CATEGORIES[category]
    return alt.Scale(domain=list(table), range=list(table.values()))


def key_of(label: str, category: str = "mode") -> str | None:
    """The value of ``category`` a series label starts with (the longest match), or None."""
    best = None
    for value in CATEGORIES[category]:
        if re.match(rf"{re.escape(value)}(?![A-Za-z0-9_])", str(label)) and (best is None or len(value) > len(best)):
            best = value
    return best


def shade(hex_color: str, step: int) -> str:
    """``hex_color`` for the ``step``-th series sharing it: 0 itself, then alternately darker and lighter."""
    if step == 0:
        return hex_color
    amount = min(0.25 * ((step + 1) // 2), 0.6)
    toward = 0 if step % 2 else 255
    rgb = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    if toward == 0 and max(rgb) < 40:  # black has no darker: go lighter instead
        toward = 255
    return "#" + "".join(f"{round(c + (toward - c) * amount):02X}" for c in rgb)


def label_colors(labels: list[str], category: str = "mode") -> list[str]:
    """The colour of each series label: its mode's (shaded when several labels share the mode), or
    one of :data:`OTHER` for a label that names no mode."""
    seen: dict[str | None, int] = {}
    out, others = [], 0
    for lab in labels:
        key = key_of(lab, category)
        if key is None:
            out.append(OTHER[others % len(OTHER)])
            others += 1
            continue
        out.append(shade(color_of(key, category), seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return out


def label_scale(labels: list[str], category: str = "mode") -> alt.Scale:
    return alt.Scale(domain=list(labels), range=label_colors(labels, category))


def label_dash(labels: list[str], category: str = "mode") -> alt.Scale:
    """Solid for the first label of each mode, a dash of its own for each further one."""
    seen: dict[str | None, int] = {}
    out = []
    for lab in labels:
        key = key_of(lab, category) or lab
        out.append(DASHES[seen.get(key, 0) % len(DASHES)])
        seen[key] = seen.get(key, 0) + 1
    return alt.Scale(domain=list(labels), range=out)


def repeats(labels: list[str], category: str = "mode") -> bool:
    """True when two labels share a mode (their lines then need dashes to be told apart)."""
    keys = [key_of(lab, category) for lab in labels]
    known = [k for k in keys if k is not None]
    return len(known) != len(set(known))


def legend_columns(labels: list[str], width: int = NARROWEST) -> int:
    """How many legend columns of these labels fit ``width`` px, at least 1."""
    longest = max((len(str(lab)) for lab in labels), default=1)
    return max(1, min(len(labels) or 1, int(width // (longest * CHAR_PX + SYMBOL_PX))))


def height(labels: list[str], base: int = PLOT_AND_AXES, titled: bool = False) -> int:
    """A chart's total height (Streamlit fits title, axes and legend into it): ``base`` plus the rows of
    the legend of ``labels`` (none for a single series, which has no legend), so the plot keeps its height."""
    if len(labels) <= 1:
        return base
    rows = -(-len(labels) // legend_columns(labels))
    return base + LEGEND_ROW * rows + (LEGEND_ROW if titled else 0)


def legend(labels: list[str], title: str | None = None, **kw) -> alt.Legend:
    """A legend under the plot, in the columns the narrowest chart fits, no label cut (labelLimit 0);
    ``values``: the entries shown (the labels), so a full-domain scale lists only what is drawn."""
    longest = max((len(str(lab)) for lab in labels), default=0)
    if longest * CHAR_PX + SYMBOL_PX > NARROWEST:  # too long even alone on its row: a line per part
        kw.setdefault("labelExpr", f"split(datum.label, '{PART}')")
    return alt.Legend(orient="bottom", direction="horizontal", columns=legend_columns(labels), labelLimit=0,
                      title=title, values=list(labels), **kw)


def mode_color(field: str, present: list[str], title: str | None = "Mode", sort: list | None = None) -> alt.Color:
    """Colour by a mode field on the fixed mode scale; the legend lists the modes ``present``."""
    return alt.Color(f"{field}:N", title=title, sort=sort or present, scale=scale("mode"),
                     legend=legend(present, title))


def series_color(field: str, labels: list[str], title: str | None = None, show_legend: bool = True) -> alt.Color:
    """Colour by a series-label field: each label in its mode's colour (:func:`label_colors`)."""
    return alt.Color(f"{field}:N", title=title, sort=list(labels), scale=label_scale(labels),
                     legend=legend(labels, title) if show_legend else None)


def series_dash(field: str, labels: list[str], title: str | None = None, show_legend: bool = True) -> alt.StrokeDash:
    """Line dashes matching :func:`series_color` (same field, title and legend, so the two merge)."""
    return alt.StrokeDash(f"{field}:N", title=title, sort=list(labels), scale=label_dash(labels),
                          legend=legend(labels, title) if show_legend else None)
