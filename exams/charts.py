"""Score distribution charts for the quality review, drawn server-side as inline SVG
(issue 3 item 8: no JavaScript library, no CDN). One histogram per component from
exams.selectors.session_score_distribution, with each certificate's pass mark drawn as
a vertical line: heaping just above a line is what the supervisor looks for."""

from decimal import Decimal

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 28, 40
# One colour per certificate kind; the label is drawn next to the line as well.
MARK_COLOURS = {"qualification": "#b42318", "skill": "#0b5cad"}
BAR_COLOUR = "#7fa7d6"


def _nice_max(value: int) -> int:
    """A round top for the count axis (at least 1): 1..5, then 10, 15, 20, ..."""
    if value <= 5:
        return max(value, 1)
    step = 5 if value <= 50 else 10
    return ((value + step - 1) // step) * step


def _fmt(value) -> str:
    number = Decimal(str(value))
    return f"{number.normalize():f}"


def histogram_svg(component: dict, *, title: str = "") -> SafeString:
    """An SVG histogram of one component's buckets with the pass marks as lines.
    `component` is one entry of `session_score_distribution`."""
    buckets = component["buckets"]
    maximum = component["max_score"] or 100
    top = _nice_max(max((b["count"] for b in buckets), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(score) -> str:
        return f"{LEFT + plot_w * float(score) / maximum:.1f}"

    def y(count) -> str:
        return f"{TOP + plot_h - plot_h * count / top:.1f}"

    parts: list[str] = []
    label = title or component["name"]
    parts.append(
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" '
            'aria-label="{}" data-component="{}">',
            WIDTH,
            HEIGHT,
            label,
            component["component"],
        )
    )
    parts.append(format_html("<title>{}</title>", label))
    # Count axis with a few gridlines.
    steps = sorted({0, top // 2, top} if top > 1 else {0, top})
    for count in steps:
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d9e2ec"/>'
                '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#616e7c">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                y(count),
                y(count),
                LEFT - 6,
                f"{float(y(count)) + 4:.1f}",
                count,
            )
        )
    # Bars.
    for bucket in buckets:
        x0, x1 = float(x(bucket["from"])), float(x(bucket["to"]))
        if bucket["count"]:
            parts.append(
                format_html(
                    '<rect class="bar" x="{}" y="{}" width="{}" height="{}" '
                    'fill="{}" data-from="{}" data-count="{}"><title>{}–{}：{} 人</title></rect>',
                    f"{x0 + 1:.1f}",
                    y(bucket["count"]),
                    f"{max(x1 - x0 - 2, 1):.1f}",
                    f"{TOP + plot_h - float(y(bucket['count'])):.1f}",
                    BAR_COLOUR,
                    bucket["from"],
                    bucket["count"],
                    bucket["from"],
                    bucket["to"],
                    bucket["count"],
                )
            )
    # Score axis: ticks every 10 points (or every bucket edge when the maximum is small).
    tick = 10 if maximum >= 50 else max(component.get("width") or 5, 1)
    parts.append(
        format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#1f2933"/>',
            LEFT,
            WIDTH - RIGHT,
            TOP + plot_h,
            TOP + plot_h,
        )
    )
    for score in range(0, maximum + 1, tick):
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#616e7c">{}</text>',
                x(score),
                TOP + plot_h + 15,
                score,
            )
        )
    # Pass marks: a dashed line per certificate, labelled; marks shared by both
    # certificates are drawn once with both labels.
    by_mark: dict[str, list[dict]] = {}
    for mark in component.get("pass_marks", []):
        by_mark.setdefault(_fmt(mark["mark"]), []).append(mark)
    for index, (value, marks) in enumerate(sorted(by_mark.items(), key=lambda i: Decimal(i[0]))):
        colour = MARK_COLOURS.get(marks[0]["certificate"], "#a15c00")
        names = "、".join(str(m["label"]) for m in marks)
        parts.append(
            format_html(
                '<line class="pass-mark" x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="{}" '
                'stroke-width="2" stroke-dasharray="5 3" data-mark="{}"/>'
                '<text x="{x}" y="{}" font-size="11" text-anchor="middle" fill="{}">{} ≥{}</text>',
                TOP - 4 if index % 2 == 0 else TOP + 10,
                TOP + plot_h,
                colour,
                value,
                TOP - 8 + (0 if index % 2 == 0 else 14),
                colour,
                names,
                value,
                x=x(Decimal(value)),
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" font-size="11" fill="#616e7c">{}</text>',
            LEFT,
            HEIGHT - 6,
            _caption(component),
        )
    )
    parts.append("</svg>")
    return mark_safe("".join(str(p) for p in parts))  # noqa: S308 - every value escaped above


def _caption(component: dict) -> str:
    text = f"n = {component['count']}"
    if component.get("mean") is not None:
        text += f"，平均 {_fmt(component['mean'])}"
    text += f"，组距 {component.get('width', 5)} 分"
    return text
