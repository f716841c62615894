//! An assessment as people read it: the text report, and one HTML file
//! with the data embedded and a radar chart drawn by its own script.

use crate::Assessment;
use serde_json::json;
use std::fmt::Write;

/// The text report: the total and its level, each pillar's level with
/// what earned it and what the next level needs, then each question.
pub fn text(a: &Assessment) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(a, &mut out);
    out
}

fn write_text(a: &Assessment, out: &mut String) -> std::fmt::Result {
    writeln!(
        out,
        "Portcullis governance assessment: bundle {}{}",
        a.bundle_version,
        a.audit
            .as_deref()
            .map(|p| format!(", audit store {p}"))
            .unwrap_or_else(|| ", no audit store".into())
    )?;
    writeln!(
        out,
        "Self-assessment: {}/{} = level {} {}",
        a.total, a.max_total, a.level, a.level_name
    )?;
    writeln!(out)?;
    writeln!(out, "Pillars:")?;
    for p in &a.pillars {
        writeln!(
            out,
            "  {:<14} level {} {:<10}  {}/{} points",
            p.pillar, p.level, p.name, p.points, p.max_points
        )?;
        for e in &p.earned {
            writeln!(out, "      + {e}")?;
        }
        for m in &p.missing {
            writeln!(out, "      - {m}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Questions:")?;
    for q in &a.questions {
        writeln!(
            out,
            "  {:>2}. [{}/2] {} ({})",
            q.number, q.score, q.question, q.pillar
        )?;
        for e in &q.earned {
            writeln!(out, "        + {e}")?;
        }
        for m in &q.missing {
            writeln!(out, "        - {m}")?;
        }
    }
    Ok(())
}

fn esc_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML report: one file, no external assets. The data is embedded as
/// JSON, and a script in the page draws the radar chart and computes the
/// totals from it, so a headless browser's DOM shows whether the page
/// really renders (the server-side tables are there for readers without
/// scripts).
pub fn html(a: &Assessment) -> Result<String, serde_json::Error> {
    // `</` cannot appear inside the script element.
    let data = serde_json::to_string(&json!(a))?.replace("</", "<\\/");
    let mut rows = String::new();
    for p in &a.pillars {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{} {}</td><td>{}/{}</td><td><ul>{}</ul></td><td><ul>{}</ul></td></tr>\n",
            esc_html(p.pillar),
            p.level,
            esc_html(p.name),
            p.points,
            p.max_points,
            p.earned.iter().map(|e| format!("<li>{}</li>", esc_html(e))).collect::<String>(),
            p.missing.iter().map(|e| format!("<li>{}</li>", esc_html(e))).collect::<String>(),
        ));
    }
    let mut qrows = String::new();
    for q in &a.questions {
        qrows.push_str(&format!(
            "<tr class=\"q\" data-score=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}/2</td><td><ul>{}{}</ul></td></tr>\n",
            q.score,
            q.number,
            esc_html(q.pillar),
            esc_html(q.question),
            q.score,
            q.earned.iter().map(|e| format!("<li class=\"earned\">{}</li>", esc_html(e))).collect::<String>(),
            q.missing.iter().map(|e| format!("<li class=\"missing\">{}</li>", esc_html(e))).collect::<String>(),
        ));
    }
    Ok(format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Portcullis governance assessment: {version}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1b1f24; background: #fff; }}
h1 {{ font-size: 1.4em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccd; padding: 4px 8px; vertical-align: top; text-align: left; }}
ul {{ margin: 0; padding-left: 1.2em; }}
li.missing {{ color: #a3261b; }}
li.earned {{ color: #1d6b2f; }}
#chart {{ width: 520px; height: 460px; }}
.summary {{ font-size: 1.1em; }}
</style>
</head>
<body>
<h1>Portcullis governance assessment</h1>
<p class="summary">Bundle <code>{version}</code>. Self-assessment <strong>{total}/{max}</strong>, level {level} <strong>{level_name}</strong>.
Computed in this page: <span id="computed-total"></span>, level <span id="computed-level"></span>.</p>
<svg id="chart" viewBox="0 0 520 460" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Maturity level per pillar"></svg>
<h2>Pillars (maturity 0-4)</h2>
<table id="pillars"><tr><th>Pillar</th><th>Level</th><th>Points</th><th>Earned</th><th>Next level needs</th></tr>
{rows}</table>
<h2>Self-assessment</h2>
<table id="questions"><tr><th>#</th><th>Pillar</th><th>Question</th><th>Score</th><th>Why</th></tr>
{qrows}</table>
<script type="application/json" id="assessment-data">{data}</script>
<script>
(function () {{
  var a = JSON.parse(document.getElementById("assessment-data").textContent);
  var svg = document.getElementById("chart");
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {{
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  }}
  var cx = 260, cy = 230, r = 170, n = a.pillars.length;
  function pt(i, v) {{
    var ang = -Math.PI / 2 + 2 * Math.PI * i / n;
    return [cx + r * v * Math.cos(ang), cy + r * v * Math.sin(ang)];
  }}
  for (var ring = 1; ring <= 4; ring++) {{
    var ps = [];
    for (var i = 0; i < n; i++) ps.push(pt(i, ring / 4).join(","));
    el("polygon", {{points: ps.join(" "), fill: "none", stroke: "#d0d4dc", "class": "ring"}});
  }}
  var shape = [];
  a.pillars.forEach(function (p, i) {{
    var end = pt(i, 1);
    el("line", {{x1: cx, y1: cy, x2: end[0], y2: end[1], stroke: "#d0d4dc"}});
    var lab = pt(i, 1.16);
    el("text", {{x: lab[0], y: lab[1], "text-anchor": "middle", "class": "pillar-label",
                 "data-pillar": p.pillar, "data-level": p.level, "font-size": "14"}},
       p.pillar.charAt(0).toUpperCase() + p.pillar.slice(1) + " " + p.level + "/4");
    shape.push(pt(i, p.level / 4).join(","));
  }});
  el("polygon", {{points: shape.join(" "), fill: "rgba(46,110,200,0.35)", stroke: "#2e6ec8",
                  "stroke-width": "2", id: "levels"}});
  var total = a.questions.reduce(function (s, q) {{ return s + q.score; }}, 0);
  var band = total <= 6 ? 0 : total <= 12 ? 1 : total <= 18 ? 2 : total <= 22 ? 3 : 4;
  document.getElementById("computed-total").textContent = total + "/24";
  document.getElementById("computed-level").textContent = band;
  document.body.setAttribute("data-rendered", "yes");
}})();
</script>
</body>
</html>
"##,
        version = esc_html(&a.bundle_version),
        total = a.total,
        max = a.max_total,
        level = a.level,
        level_name = a.level_name,
        rows = rows,
        qrows = qrows,
        data = data,
    ))
}
