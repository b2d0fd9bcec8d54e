"""The quarterly joint analysis report (12345与110工作分析): one self-contained HTML file with its
charts inside, the same tables as CSV beside it, and the charts as PNG.

Charts are drawn by matplotlib (the ``report`` extra); headings are Chinese, so a CJK font must be
installed (Debian ``fonts-wqy-microhei``; ``make setup`` installs it): without one, matplotlib
would draw empty boxes, so the renderer refuses with a clear error instead.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hotline_bridge.core.vocabulary import JURISDICTION_ZH, Jurisdiction
from hotline_bridge.reports.figures import Durations, Figures, Rate

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "AR PL UMing CN")

DIRECTION_ZH = {"12345->110": "12345 转 110", "110->12345": "110 转 12345"}
KIND_ZH = {
    "carry_transfer": "一键携号转接",
    "three_way": "三方通话",
    "work_order": "工单",
    "notice": "互相通报",
}
CLASS_ZH = {
    "police_matter": "110 受理事项",
    "non_police_matter": "12345 受理事项",
    "unclear_responsibility": "职责不清事项",
    "neither_platform": "两平台均不受理",
    "police_first_response": "110 先期处置",
    "unclassified": "未分类",
}
CHANNEL_ZH = {
    "phone": "电话",
    "wechat": "微信",
    "sms": "短信",
    "web": "网站",
    "app": "客户端",
    "email": "电子邮件",
    "unknown": "未注明",
}
OUTCOME_ZH = {
    "total": "合计",
    "answered": "对方接听",
    "returned_to_agent": "回到坐席",
    "abandoned": "市民挂断",
    "busy": "忙",
    "no_answer": "无人接听",
    "rejected": "拒接",
    "failed": "失败",
    "cancelled": "撤回",
    "unknown": "未知",
    "unsettled": "未结",
}


class ReportError(RuntimeError):
    """The report cannot be drawn here (no charting library or no CJK font); says why."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import font_manager
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ReportError("charts need matplotlib: pip install 'hotline-bridge[report]'") from exc
    names = {f.name for f in font_manager.fontManager.ttflist}
    if not names & set(CJK_FONTS):
        # matplotlib's font cache predates the font's installation: add the files directly.
        for path in font_manager.findSystemFonts():
            if any(k in path.lower() for k in ("wqy", "notosanscjk", "uming")):
                font_manager.fontManager.addfont(path)
        names = {f.name for f in font_manager.fontManager.ttflist}
    font = next((f for f in CJK_FONTS if f in names), None)
    if font is None:
        raise ReportError(
            "no Chinese font for the charts: apt-get install fonts-wqy-microhei "
            f"(looked for {', '.join(CJK_FONTS)})"
        )
    plt.rcParams["font.sans-serif"] = [font]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


# -- tables ---------------------------------------------------------------------------------------


Table = tuple[str, Sequence[str], list[Sequence[object]]]  # (title, header, rows)


def _rate_row(name: str, rate: Rate) -> Sequence[object]:
    return (name, rate.percent(), rate.numerator, rate.denominator)


def _dur(d: Durations) -> tuple[str, str]:
    def fmt(s: float | None) -> str:
        if s is None:
            return "—"
        return f"{s / 60:.1f} 分钟" if s < 3 * 3600 else f"{s / 3600:.1f} 小时"

    return fmt(d.median_s), fmt(d.p90_s)


def tables(f: Figures) -> dict[str, Table]:
    """Every table of the report, keyed by its CSV file's stem."""
    label = f.labels.get

    def named(counts: dict[str, int], names: dict[str, str]) -> list[Sequence[object]]:
        return [(names.get(k, k), k, v) for k, v in counts.items()]

    receipt_med, receipt_p90 = _dur(f.time_to_receipt)
    partner_med, partner_p90 = _dur(f.partner_receipt)
    return {
        "summary": (
            "考核指标",
            ("指标", "数值", "分子", "分母"),
            [
                ("移交记录总数", f.total, "", ""),
                _rate_row("工单签收率", f.receipt),
                _rate_row("及时响应率", f.response),
                _rate_row("按时办结率", f.on_time),
                _rate_row("群众满意率", f.satisfaction),
                ("签收用时(中位数 / 90%)", f"{receipt_med} / {receipt_p90}", "", ""),
                ("对方平台收到用时(中位数 / 90%)", f"{partner_med} / {partner_p90}", "", ""),
                ("退回件数", f.returns, "", ""),
                ("两平台间退回(边界争议)", f.boundary_disputes, "", ""),
                ("督办件数", f.supervised, "", ""),
                ("滋扰举报", f.nuisance, "", ""),
            ],
        ),
        "by_direction": (
            "按流转方向",
            ("方向", "代码", "件数"),
            named(f.by_direction, DIRECTION_ZH),
        ),
        "by_kind": ("按移交方式", ("方式", "代码", "件数"), named(f.by_kind, KIND_ZH)),
        "by_class": ("按事项类别", ("类别", "代码", "件数"), named(f.by_class, CLASS_ZH)),
        "by_category": (
            "按事项分类",
            ("分类", "代码", "件数"),
            [(label(k, k), k, v) for k, v in f.by_category.items()],
        ),
        "by_jurisdiction": (
            "按属地",
            ("属地", "代码", "件数"),
            [
                (JURISDICTION_ZH.get(Jurisdiction(k), k) if k in _JURISDICTIONS else k, k, v)
                for k, v in f.by_jurisdiction.items()
            ],
        ),
        "by_channel": ("按受理渠道", ("渠道", "代码", "件数"), named(f.by_channel, CHANNEL_ZH)),
        "transfers": (
            "一键携号转接结果",
            ("结果", "代码", "件数"),
            named(f.transfers, OUTCOME_ZH),
        ),
        "three_way": ("三方通话结果", ("结果", "代码", "件数"), named(f.three_way, OUTCOME_ZH)),
        "return_reasons": (
            "退回原因",
            ("原因", "件数"),
            [(k or "(未填写)", v) for k, v in f.return_reasons.items()],
        ),
        "top_categories": (
            "热点事项(前十)",
            ("分类", "代码", "件数"),
            [(label(k, k), k, v) for k, v in f.top_categories],
        ),
        "top_places": ("热点地点(前十)", ("地点", "件数"), [(k, v) for k, v in f.top_places]),
    }


_JURISDICTIONS = frozenset(j.value for j in Jurisdiction)


# -- charts ---------------------------------------------------------------------------------------


def _bar(plt: Any, title: str, items: Iterable[tuple[str, int]], out: Path) -> Path:
    pairs = list(items)
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(3, len(pairs)) + 1.2))
    names = [p[0] for p in pairs][::-1]
    values = [p[1] for p in pairs][::-1]
    bars = ax.barh(names, values, color="#3b6ea8")
    ax.bar_label(bars, padding=3, fontsize=9)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def charts(f: Figures, out: Path) -> list[tuple[str, Path]]:
    """The report's charts as PNG files under ``out`` (title, path)."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    t = tables(f)
    made = []
    for stem, (title, _, rows) in t.items():
        if stem in ("summary", "return_reasons", "top_places", "three_way"):
            continue
        items = [(str(r[0]), int(r[-1])) for r in rows if r[1] != "total"]  # type: ignore[call-overload]
        if items:
            made.append((title, _bar(plt, title, items, out / f"{stem}.png")))
    rates = [("签收率", f.receipt), ("及时响应率", f.response), ("按时办结率", f.on_time),
             ("满意率", f.satisfaction)]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 3.2))
    shown = [(n, 100 * r.value) for n, r in rates if r.value is not None]
    bars = ax.bar([n for n, _ in shown], [v for _, v in shown], color="#4c9a6a")
    ax.bar_label(bars, labels=[f"{v:.1f}%" for _, v in shown], padding=3)
    ax.set_ylim(0, 110)
    ax.set_title("考核指标")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path = out / "rates.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [("考核指标", path), *made]


# -- the files ------------------------------------------------------------------------------------


def write_report(f: Figures, out: Path, *, site: str, title: str, period: str) -> Path:
    """``out/report.html`` (self-contained), ``out/*.csv``, ``out/charts/*.png``, and
    ``out/figures.json``; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    t = tables(f)
    for stem, (_, header, rows) in t.items():
        with (out / f"{stem}.csv").open("w", newline="", encoding="utf-8-sig") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    pictures = charts(f, out / "charts")
    (out / "figures.json").write_text(
        json.dumps(asdict(f), default=str, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    doc = _html(f, t, pictures, site=site, title=title, period=period)
    page = out / "report.html"
    page.write_text(doc, encoding="utf-8")
    return page


def _html(
    f: Figures,
    t: dict[str, Table],
    pictures: list[tuple[str, Path]],
    *,
    site: str,
    title: str,
    period: str,
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:.25em .6em;text-align:left}th{background:#f2f4f7}td.n{text-align:right}"
        "img{max-width:100%}h2{border-bottom:2px solid #3b6ea8;padding-bottom:.2em}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>统计平台:{esc(site)} · 统计区间:{esc(period)} · 移交记录 {f.total} 件</p>",
    ]
    images = dict(pictures)
    for stem, (heading, header, rows) in t.items():
        parts.append(f"<h2>{esc(heading)}</h2>")
        if heading in images:
            data = base64.b64encode(images[heading].read_bytes()).decode()
            parts.append(f"<img alt='{esc(heading)}' src='data:image/png;base64,{data}'>")
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = "".join(
                f"<td class='n'>{esc(str(c))}</td>"
                if isinstance(c, int | float)
                else f"<td>{esc(str(c))}</td>"
                for c in row
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append(f"</table><p><small>{esc(stem)}.csv</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
