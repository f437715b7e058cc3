"use strict";
// The train, classify, count and statistics pages: forms that start jobs, and a jobs table
// polled every second. No framework, nothing fetched from outside the app.

const PAGE = document.body.dataset.page;
const $ = (selector) => document.querySelector(selector);
const state = { jobs: [], human: null, shownDone: {} };

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function attempt(action) {
  try { await action(); } catch (err) { toast(err.message); }
}

// -- jobs ------------------------------------------------------------------------------

function describeProgress(job) {
  const p = job.progress || {};
  const parts = [];
  if (p.epoch) parts.push(`epoch ${p.epoch}/${p.epochs}`);
  if (p.accuracy && p.accuracy !== "-") parts.push(`accuracy ${p.accuracy}`);
  const task = p.task;
  if (task && task.total) parts.push(`${task.description}: ${task.completed}/${task.total}`);
  if (job.state === "running" && p.seconds_left != null) parts.push(`${Math.ceil(p.seconds_left)} s left`);
  return parts.join(", ");
}

function jobRow(job) {
  const actions = element("td");
  const act = (label, path) => actions.append(element("button", {
    text: label, "data-action": label.toLowerCase(),
    onclick: () => attempt(async () => { await api(path, {}); await pollJobs(); }),
  }));
  if (["queued", "running", "interrupted"].includes(job.state)) act("Cancel", `/api/jobs/${job.id}/cancel`);
  if ((job.args || {}).watch && ["queued", "running"].includes(job.state)) {
    actions.append(element("button", {
      text: "Stop watching", "data-action": "stop",
      onclick: () => attempt(async () => { await api(`/api/jobs/${job.id}/stop`, {}); await pollJobs(); }),
    }));
  }
  if (["interrupted", "failed", "cancelled"].includes(job.state) && job.kind !== "abundance") {
    act("Resume", `/api/jobs/${job.id}/resume`);
  }
  if (job.state === "done" && job.kind !== "classify") {
    actions.append(element("a", { href: `/api/jobs/${job.id}/files/report.html`, target: "_blank", text: "report" }));
  }
  const messages = (job.progress && job.progress.messages) || [];
  const last = job.error || messages[messages.length - 1] || "";
  return element("tr", { "data-job": job.id, "data-kind": job.kind, "data-state": job.state },
    element("td", { text: `${job.kind} ${job.created.replace("T", " ").slice(0, 19)}` }),
    element("td", { class: `state-${job.state}`, text: job.state }),
    element("td", { text: describeProgress(job) }),
    element("td", { text: last.slice(0, 160) }),
    actions);
}

async function pollJobs() {
  state.jobs = await api("/api/jobs");
  $("#jobs tbody").replaceChildren(...state.jobs.map(jobRow));
  const latest = (kind) => state.jobs.find((job) => job.kind === kind && job.state === "done");
  for (const kind of ["train", "classify", "abundance"]) {
    const job = latest(kind);
    if (job && state.shownDone[kind] !== job.id) {
      state.shownDone[kind] = job.id;
      (PAGES[PAGE].onDone || (() => {}))(kind, job);
    }
  }
  if (PAGE === "count") fillSources();
  if (PAGE === "classify") showSampleProgress(state.jobs.find((job) => job.kind === "classify"));
}

function showSampleProgress(job) {
  const box = $("#sample-progress");
  const samples = (job && job.progress && job.progress.samples) || [];
  if (!samples.length) { box.replaceChildren(); return; }
  const watching = (job.args || {}).watch && job.state === "running" ? ", watching the folder for new images" : "";
  box.replaceChildren(element("h2", { text: `Images classified per sample (${job.state}${watching})` }),
    element("div", { class: "bars" }, ...samples.map((s) => element("div", { "data-sample": s.sample },
      element("span", { text: s.sample }),
      element("span", {}, element("span", { class: "bar", style: `width: ${(100 * s.done / Math.max(1, s.total)).toFixed(1)}%` })),
      element("span", { text: `${s.done}/${s.total}` })))));
}

// -- train -----------------------------------------------------------------------------

function chosenClasses() {
  return [...document.querySelectorAll("#train-classes input:checked")].map((box) => box.value);
}

async function showPlan() {
  const query = chosenClasses().map((name) => `classes=${encodeURIComponent(name)}`).join("&");
  const plan = await api(`/api/train/plan?${query}`);
  $("#auto-plan").replaceChildren(
    element("strong", { text: `model auto would train ${plan.auto.model}` }),
    element("span", { text: ` (classes under ${plan.auto.min_per_class} images are left out)` }),
    element("ul", {}, ...plan.auto.reasons.map((reason) => element("li", { text: reason }))));
  showClassifier(plan.classifier);
}

function showClassifier(bundle) {
  const line = $("#classifier");
  if (!bundle) { line.textContent = "No classifier trained in this project yet."; return; }
  line.replaceChildren(`Project classifier: ${bundle} `, element("button", {
    text: "Pre-label the project with it", id: "prelabel",
    onclick: () => attempt(async () => { await api("/api/prelabel", { bundle }); toast("pre-labelling started"); }),
  }));
}

const PAGES = {
  train: {
    async init() {
      const plan = await api("/api/train/plan");
      $("#train-classes").replaceChildren(...Object.entries(plan.classes).map(([name, n]) =>
        element("label", {}, element("input", { type: "checkbox", value: name, checked: "" }), ` ${name} (${n})`)));
      $("#train-classes").addEventListener("change", () => attempt(showPlan));
      await showPlan();
      $("#train-form").addEventListener("submit", (event) => {
        event.preventDefault();
        const form = new FormData(event.target);
        const options = { model: form.get("model") };
        for (const name of ["epochs", "input_size", "batch_size", "min_per_class"]) {
          if (form.get(name)) options[name] = Number(form.get(name));
        }
        attempt(async () => {
          await api("/api/jobs/train", { classes: chosenClasses(), options });
          toast("training started");
          await pollJobs();
        });
      });
    },
    onDone(kind, job) { if (kind === "train") showClassifier(job.result.bundle); },
  },
  classify: {
    async init() {
      const classes = await api("/api/classes");
      state.classes = classes.map((c) => c.name);
      const bundleField = $("#classify-form input[name=bundle]");
      bundleField.addEventListener("change", () => showCurve(bundleField.value));
      await showCurve("");
      $("#classify-form").addEventListener("submit", (event) => {
        event.preventDefault();
        const form = new FormData(event.target);
        const body = { images: form.get("images") };
        if (form.get("bundle")) body.bundle = form.get("bundle");
        if (form.get("threshold")) body.threshold = Number(form.get("threshold"));
        if (form.get("sample_regex")) body.sample_regex = form.get("sample_regex");
        if (form.get("watch")) body.watch = true;
        attempt(async () => { await api("/api/jobs/classify", body); toast("classification started"); await pollJobs(); });
      });
    },
    async onDone(kind, job) {
      if (kind !== "classify") return;
      const samples = await api(`/api/jobs/${job.id}/samples`);
      const labels = [...new Set(samples.flatMap((s) => Object.keys(s.counts)))].sort();
      const rows = samples.map((s) => element("tr", {
        "data-sample": s.sample, onclick: (event) => attempt(() => showSample(job, s.sample, event.currentTarget)),
      }, element("td", { text: s.sample }), element("td", { text: s.images }),
      ...labels.map((label) => element("td", { text: s.counts[label] || 0 }))));
      $("#samples").replaceChildren(element("table", {},
        element("thead", {}, element("tr", {}, ...["sample", "images", ...labels].map((h) => element("th", { text: h })))),
        element("tbody", {}, ...rows)));
    },
  },
  count: {
    async init() {
      state.classes = (await api("/api/classes")).map((c) => c.name);
      $("#human-file").addEventListener("change", (event) => attempt(async () => {
        const file = event.target.files[0];
        state.human = null;
        const upload = await api("/api/uploads/human-counts", await file.text(), "text/csv");
        state.human = upload.id;
        $("#human-state").textContent = `${upload.samples.length} samples, ${upload.taxa.length} taxa`;
      }));
      $("#count-form").addEventListener("submit", (event) => {
        event.preventDefault();
        const body = { classify_job: $("#count-source").value };
        if (state.human) body.human = state.human;
        attempt(async () => { await api("/api/jobs/abundance", body); toast("counting started"); await pollJobs(); });
      });
    },
    async onDone(kind, job) {
      if (kind !== "abundance") return;
      const files = await api(`/api/jobs/${job.id}/files`);
      const links = [];
      for (const name of files) {
        const url = `/api/jobs/${job.id}/files/${encodeURIComponent(name)}`;
        links.push(element("a", { href: url, "data-file": name, text: name }));
        if (name.endsWith(".csv")) {
          links.push(element("a", { href: `${url}?format=parquet`, "data-file": name.replace(/\.csv$/, ".parquet"), text: "(Parquet)" }));
        }
      }
      $("#downloads").replaceChildren(...links);
      $("#figure").src = `/api/jobs/${job.id}/files/downcore.png`;
      showDowncore(await api(`/api/jobs/${job.id}/downcore`));
      const flagged = (await api(`/api/jobs/${job.id}/drift`)).filter((row) => row.flagged);
      $("#drift").className = flagged.length ? "warning" : "hint";
      $("#drift").textContent = flagged.length
        ? `Drift: ${flagged.map((r) => `${r.sample} (KS distance ${r.ks_distance.toFixed(2)})`).join(", ")} ` +
          "look unlike the classifier's validation images; check their images before trusting their counts."
        : "Drift: no sample looks unlike the classifier's validation images.";
    },
  },
  stats: {
    async init() {
      const stats = await api("/api/stats");
      const most = Math.max(1, ...stats.classes.map((c) => c.validated));
      $("#chart-classes").replaceChildren(bars(stats.classes.map((c) => [c.name, c.validated, most])));
      const total = Object.values(stats.statuses).reduce((a, b) => a + b, 0) || 1;
      $("#chart-progress").replaceChildren(bars(Object.entries(stats.statuses).map(([k, n]) => [k, n, total])));
      if (!stats.confusion) {
        $("#confusion").textContent = "Train a classifier to see its evaluation.";
        return;
      }
      const c = stats.confusion;
      const peak = Math.max(1, ...c.counts.flat());
      $("#confusion").replaceChildren(element("table", { class: "confusion" },
        element("tr", {}, element("th", { text: "true \\ predicted" }), ...c.labels.map((l) => element("th", { text: l }))),
        ...c.rows.map((row, i) => element("tr", {}, element("th", { text: row }), ...c.counts[i].map((n) =>
          element("td", { text: n, style: `background: rgba(74,127,181,${n / peak})` }))))));
      $("#chart-pr").replaceChildren(bars(Object.entries(stats.per_class).flatMap(([name, m]) => [
        [`${name} precision`, Number(m.precision.toFixed(3)), 1], [`${name} recall`, Number(m.recall.toFixed(3)), 1]])));
    },
  },
};

function bars(items) {
  return element("div", { class: "bars" }, ...items.map(([name, value, most]) => element("div", {},
    element("span", { text: name }),
    element("span", {}, element("span", { class: "bar", style: `width: ${(100 * value / most).toFixed(1)}%` })),
    element("span", { text: value }))));
}

async function showSample(job, sample, row, target = "#sample-images") {
  document.querySelectorAll("#samples tr").forEach((r) => r.classList.toggle("selected", r === row));
  const page = await api(`/api/jobs/${job.id}/samples/${encodeURIComponent(sample)}?limit=200`);
  const names = [...new Set([...state.classes, ...page.items.map((i) => i.predicted)])].filter((n) => n !== "unsure");
  $(target).replaceChildren(...page.items.map((item) => {
    const select = element("select", { "data-id": item.id },
      element("option", { value: "", text: `${item.predicted} (${item.score.toFixed(2)})` }),
      ...names.map((name) => element("option", { value: name, text: `→ ${name}` })));
    if (item.label) select.value = item.label;
    const tile = element("div", { class: "tile", "data-path": item.path, "data-corrected": item.label ? "1" : "0" },
      element("img", { src: item.thumb || "", alt: item.path, loading: "lazy" }), select);
    select.addEventListener("change", () => attempt(async () => {
      await api("/api/labels", { ids: [item.id], label: select.value || null });
      tile.dataset.corrected = select.value ? "1" : "0";
    }));
    return tile;
  }));
}

async function showCurve(bundle) {
  const box = $("#curve");
  let curve;
  try {
    curve = await api(`/api/calibration-curve${bundle ? `?bundle=${encodeURIComponent(bundle)}` : ""}`);
  } catch (err) {
    box.textContent = err.message;
    return;
  }
  if (!curve.points.length) { box.textContent = "This bundle keeps no validation probabilities."; return; }
  const [w, h, pad] = [420, 220, 34];
  const x = (c) => pad + c * (w - 2 * pad);
  const y = (a) => h - pad - a * (h - 2 * pad);
  const svg = (tag, attributes, ...children) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  };
  const path = curve.points.map((p, i) => `${i ? "L" : "M"}${x(p.coverage).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join("");
  const dots = curve.points.map((p) => {
    const dot = svg("circle", { cx: x(p.coverage), cy: y(p.accuracy), r: 3, class: "point" },
      svg("title", {}, `threshold ${p.threshold.toFixed(3)}: coverage ${(100 * p.coverage).toFixed(1)} %, accuracy ${(100 * p.accuracy).toFixed(1)} %`));
    dot.addEventListener("click", () => { $("#classify-form input[name=threshold]").value = p.threshold.toFixed(3); });
    return dot;
  });
  const text = (tx, ty, content, anchor = "middle") => svg("text", { x: tx, y: ty, "text-anchor": anchor }, content);
  box.replaceChildren(svg("svg", { width: w, height: h, class: "curve" },
    svg("line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: "axis" }),
    svg("line", { x1: pad, y1: pad, x2: pad, y2: h - pad, class: "axis" }),
    text(w / 2, h - 6, "coverage (share of images given a class)"),
    text(pad - 4, pad, "100 %", "end"), text(pad - 4, h - pad, "0", "end"),
    svg("path", { d: path, class: "line" }), ...dots),
    element("p", { class: "hint", text: `The bundle's own threshold: ${curve.threshold ?? "none"}` }));
}

const METHOD_COLOURS = { raw: "#7f8c8d", acc: "#2e86c1", em: "#c0392b", human: "#27ae60" };

function svgNode(tag, attributes, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// One panel per taxon: relative abundance across, depth down (the shallowest on top), each
// method in its colour with its interval, the human counts as open squares.
function showDowncore(data) {
  const taxa = [...new Set(data.points.map((p) => p.taxon))];
  const methods = [...new Set(data.points.map((p) => p.method))];
  const positions = data.points.map((p) => p.position);
  const [top, bottom] = [Math.min(...positions), Math.max(...positions)];
  const [w, h, pad, gap] = [190, 300, 34, 12];
  const y = (v) => pad + (bottom > top ? (v - top) / (bottom - top) : 0.5) * (h - 2 * pad);
  const shift = (m) => (methods.indexOf(m) - (methods.length - 1) / 2) * 3;
  const axisName = data.axis === "sample" ? "sample (in order)" : data.axis.replace(/^depth_(\w+)$/, "depth ($1)");
  const panels = taxa.map((taxon, k) => {
    const left = pad + k * (w + gap);
    const x = (f) => left + f * (w - 10);
    const marks = data.points.filter((p) => p.taxon === taxon).map((p) => {
      const cy = y(p.position) + shift(p.method);
      const percent = (v) => (v == null ? "?" : `${(100 * v).toFixed(1)} %`);
      const text = `${p.sample} (${data.axis === "sample" ? `#${p.position}` : `${p.position} ${axisName.replace(/^depth \((.*)\)$/, "$1")}`}): ${taxon} ${percent(p.fraction)}, ${percent(p.low)} to ${percent(p.high)} (${p.method})`;
      const colour = METHOD_COLOURS[p.method] || "#333";
      const shape = p.method === "human"
        ? svgNode("rect", { x: x(p.fraction) - 4, y: cy - 4, width: 8, height: 8, fill: "none", stroke: colour })
        : svgNode("circle", { cx: x(p.fraction), cy, r: 4, fill: colour });
      const mark = svgNode("g", { class: "point", "data-sample": p.sample, "data-taxon": taxon, "data-method": p.method },
        svgNode("line", { x1: x(p.low ?? p.fraction), x2: x(p.high ?? p.fraction), y1: cy, y2: cy, stroke: colour }),
        shape, svgNode("title", {}, text));
      mark.addEventListener("mouseenter", () => { $("#downcore-info").textContent = text; });
      mark.addEventListener("click", () => attempt(async () => {
        $("#downcore-info").textContent = `${text}. The images of ${p.sample}:`;
        await showSample({ id: data.classify_job }, p.sample, null, "#sample-images-count");
      }));
      return mark;
    });
    return svgNode("g", {},
      svgNode("rect", { x: left, y: pad, width: w - 10, height: h - 2 * pad, class: "frame" }),
      svgNode("text", { x: left + (w - 10) / 2, y: pad - 8, "text-anchor": "middle", class: "taxon" }, taxon),
      svgNode("text", { x: left, y: h - pad + 14 }, "0"),
      svgNode("text", { x: left + w - 10, y: h - pad + 14, "text-anchor": "end" }, "100 %"),
      ...marks);
  });
  const samples = [...new Map(data.points.map((p) => [p.sample, p.position])).entries()];
  const ticks = samples.map(([name, at]) => svgNode("text", { x: pad - 4, y: y(at) + 4, "text-anchor": "end" },
    data.axis === "sample" ? name : String(at)));
  const width = pad + taxa.length * (w + gap);
  const legend = methods.map((m, i) => svgNode("text", { x: pad + i * 80, y: h - 4, fill: METHOD_COLOURS[m] || "#333" }, `● ${m}`));
  $("#downcore").replaceChildren(svgNode("svg", { width, height: h, class: "downcore", "data-axis": data.axis },
    svgNode("text", { x: 10, y: h / 2, transform: `rotate(-90 10 ${h / 2})`, "text-anchor": "middle" }, axisName),
    ...ticks, ...panels, ...legend));
}

function fillSources() {
  const select = $("#count-source");
  const done = state.jobs.filter((job) => job.kind === "classify" && job.state === "done");
  const ids = done.map((job) => job.id).join();
  if (select.dataset.ids === ids) return;
  select.dataset.ids = ids;
  select.replaceChildren(...done.map((job) => element("option", { value: job.id, text: `${job.args.images} (${job.id})` })));
}

async function start() {
  await attempt(() => PAGES[PAGE].init());
  await attempt(pollJobs);
  setInterval(() => attempt(pollJobs), 1000);
  document.body.dataset.ready = "1";
}

start();
