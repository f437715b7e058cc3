// foramflow label: a paged thumbnail grid driven by the JSON API of foramflow.label.app.
"use strict";

const PAGE = 200;
const $ = (id) => document.getElementById(id);
const state = {
  view: "grid",      // grid (server-paged, filtered) or next / mislabels / duplicates / disagreements
  items: [],         // rows on screen
  list: null,        // the whole list for non-grid views (paged here)
  offset: 0, total: 0,
  cursor: 0, selected: new Set(), anchor: 0,
  classes: [], activeClass: null,
};

const user = () => $("user").value.trim() || null;

// -- project, classes ------------------------------------------------------------------

async function loadProject() {
  const p = await api("/api/project");
  $("project-name").textContent = p.name;
  $("status-counts").textContent =
    `${p.total} images · ${p.statuses.validated} validated · ${p.statuses.predicted} predicted · ${p.statuses.unlabelled} unlabelled`;
  if (!$("user").value) $("user").value = localStorage.getItem("foramflow-user") || p.user;
  const sample = $("f-sample"), chosen = sample.value;
  sample.length = 1;
  for (const s of p.samples) sample.add(new Option(s, s));
  sample.value = chosen;
}

async function loadClasses(classes) {
  state.classes = classes || await api("/api/classes");
  const list = $("classes");
  list.replaceChildren();
  state.classes.forEach((c, i) => {
    const li = document.createElement("li");
    li.dataset.class = c.name;
    li.classList.toggle("below", c.below_target);
    li.classList.toggle("selected", c.name === state.activeClass);
    li.title = c.below_target ? `${c.name}: fewer than 200 validated images` : c.name;
    const key = i < 10 ? String((i + 1) % 10) : "";
    li.innerHTML = `<span class="key"></span><span><span class="name"></span><span class="group"></span></span>` +
      `<span class="n-valid" data-count="validated"></span><span class="n-pred" data-count="predicted"></span>`;
    li.querySelector(".key").textContent = key;
    li.querySelector(".name").textContent = c.name;
    li.querySelector(".group").textContent = c.group;
    li.querySelector(".n-valid").textContent = c.validated;
    li.querySelector(".n-pred").textContent = c.predicted ? `+${c.predicted}` : "";
    li.addEventListener("click", () => selectClass(c.name));
    list.append(li);
  });
  const filter = $("f-label"), chosen = filter.value;
  filter.length = 1;
  for (const c of state.classes) filter.add(new Option(c.name, c.name));
  filter.value = chosen;
}

function selectClass(name) {
  state.activeClass = state.activeClass === name ? null : name;
  $("f-label").value = state.activeClass || "";
  for (const li of $("classes").children) li.classList.toggle("selected", li.dataset.class === state.activeClass);
  showView("grid");
}

// -- grid ------------------------------------------------------------------------------

function filters() {
  const q = new URLSearchParams();
  for (const [key, id] of [["label", "f-label"], ["status", "f-status"], ["sample", "f-sample"],
                           ["min_score", "f-min"], ["max_score", "f-max"]]) {
    if ($(id).value !== "") q.set(key, $(id).value);
  }
  return q;
}

async function loadPage(keepCursor = false) {
  if (state.view === "grid") {
    const q = filters();
    q.set("offset", state.offset);
    q.set("limit", PAGE);
    const page = await api(`/api/images?${q}`);
    state.items = page.items;
    state.total = page.total;
  } else {
    state.items = state.list.slice(state.offset, state.offset + PAGE);
    state.total = state.list.length;
  }
  if (!keepCursor) { state.cursor = 0; state.anchor = 0; state.selected.clear(); }
  state.cursor = Math.min(state.cursor, Math.max(0, state.items.length - 1));
  render();
}

function caption(item) {
  if (item.status === "validated") return item.label;
  if (item.status === "predicted") return `${item.pred_label} ${item.pred_score.toFixed(2)}?`;
  return item.name;
}

function render() {
  const grid = $("grid");
  const tiles = state.items.map((item, i) => {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.dataset.index = i;
    tile.dataset.id = item.id;
    tile.dataset.status = item.status;
    tile.dataset.label = item.label || "";
    tile.title = `${item.name}\nsample ${item.sample ?? "?"}` + (item.depth_cm != null ? ` · ${item.depth_cm} cm` : "");
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.src = item.thumb;
    img.alt = item.name;
    const cap = document.createElement("div");
    cap.className = "cap";
    cap.textContent = caption(item);
    tile.append(img, cap);
    if (item.suggested) {
      const extra = document.createElement("span");
      extra.className = "extra";
      extra.textContent = `→ ${item.suggested}`;
      tile.append(extra);
    }
    if (item.group !== undefined && (i === 0 || state.items[i - 1].group !== item.group)) {
      const sep = document.createElement("div");
      sep.className = "group-sep";
      sep.textContent = `duplicate group ${item.group + 1}`;
      return [sep, tile];
    }
    return [tile];
  }).flat();
  grid.replaceChildren(...tiles);
  const pages = Math.max(1, Math.ceil(state.total / PAGE));
  $("page-info").textContent = `${state.offset / PAGE + 1} / ${pages} (${state.total})`;
  for (const b of document.querySelectorAll("[data-view]")) b.classList.toggle("active", b.dataset.view === state.view);
  paintSelection();
}

function tileAt(i) { return $("grid").querySelector(`.tile[data-index="${i}"]`); }

function paintSelection() {
  for (const tile of $("grid").querySelectorAll(".tile")) {
    const i = Number(tile.dataset.index);
    tile.classList.toggle("selected", state.selected.has(i));
    tile.classList.toggle("cursor", i === state.cursor);
  }
  const t = tileAt(state.cursor);
  if (t) t.scrollIntoView({ block: "nearest" });
  if (!$("viewer").hidden) showViewer();
}

function refreshTile(i) {
  const item = state.items[i], tile = tileAt(i);
  if (!tile) return;
  tile.dataset.status = item.status;
  tile.dataset.label = item.label || "";
  tile.querySelector(".cap").textContent = caption(item);
}

function targets() {
  return state.selected.size ? [...state.selected].sort((a, b) => a - b) : (state.items.length ? [state.cursor] : []);
}

function moveCursor(to, extend) {
  if (!state.items.length) return;
  to = Math.max(0, Math.min(state.items.length - 1, to));
  state.cursor = to;
  if (extend) {
    const [a, b] = [Math.min(state.anchor, to), Math.max(state.anchor, to)];
    state.selected = new Set(Array.from({ length: b - a + 1 }, (_, k) => a + k));
  } else {
    state.anchor = to;
    state.selected.clear();
  }
  paintSelection();
}

function columns() {
  const tiles = $("grid").querySelectorAll(".tile");
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n++;
  return n;
}

// -- labelling -------------------------------------------------------------------------

async function applyLabel(indices, labelFor) {
  const groups = new Map();
  for (const i of indices) {
    const label = labelFor(state.items[i]);
    if (label === undefined) continue;
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(i);
  }
  for (const [label, idx] of groups) {
    await api("/api/labels", { ids: idx.map((i) => state.items[i].id), label, user: user() });
    for (const i of idx) {
      const item = state.items[i];
      item.label = label;
      item.status = label === null ? (item.pred_label ? "predicted" : "unlabelled") : "validated";
      refreshTile(i);
    }
  }
  if (indices.length === 1 && indices[0] < state.items.length - 1) moveCursor(indices[0] + 1, false);
  else { state.selected.clear(); paintSelection(); }
  await Promise.all([loadClasses(), loadProject()]);
}

async function labelWithKey(digit) {
  const index = digit === 0 ? 9 : digit - 1;
  const c = state.classes[index];
  if (!c) return toast(`no class on key ${digit}`);
  await applyLabel(targets(), () => c.name);
}

async function undo() {
  const result = await api("/api/undo", { user: user() });
  if (!result.ids.length) return toast("nothing to undo");
  const byId = new Map(result.items.map((r) => [r.id, r]));
  state.items.forEach((item, i) => {
    if (byId.has(item.id)) { Object.assign(item, byId.get(item.id)); refreshTile(i); }
  });
  const first = state.items.findIndex((item) => byId.has(item.id));
  if (first >= 0) moveCursor(first, false);
  toast(`undone: ${result.ids.length} image${result.ids.length > 1 ? "s" : ""}`);
  await Promise.all([loadClasses(), loadProject()]);
}

// -- views -----------------------------------------------------------------------------

async function showView(view) {
  state.view = view;
  state.offset = 0;
  if (view === "grid") { state.list = null; return loadPage(); }
  toast("computing…");
  if (view === "duplicates") {
    const groups = await api("/api/duplicates");
    state.list = groups.flatMap((g, k) => g.map((row) => ({ ...row, group: k })));
  } else {
    state.list = await api(`/api/${view}`);
  }
  toast(`${state.list.length} images`);
  return loadPage();
}

async function showViewer() {
  const item = state.items[state.cursor];
  if (!item) return;
  $("viewer").hidden = false;
  $("viewer-img").src = item.full;
  const detail = await api(`/api/images/${item.id}`);
  const lines = [
    `<b>${escapeHtml(detail.name)}</b> · sample ${escapeHtml(detail.sample ?? "?")}` +
      (detail.depth_cm != null ? ` · ${detail.depth_cm} cm` : ""),
    `status: ${detail.status}` + (detail.label ? ` · ${escapeHtml(detail.label)} by ${escapeHtml(detail.validated_by)} at ${detail.validated_at}` : ""),
    detail.pred_label ? `prediction: ${escapeHtml(detail.pred_label)} ${detail.pred_score.toFixed(3)} (${escapeHtml(detail.pred_model)})` : "no prediction",
    ...detail.history.map((h) => `${h.at} ${escapeHtml(h.user)} ${h.action}: ${escapeHtml(h.old_label ?? "—")} → ${escapeHtml(h.new_label ?? "—")}${h.undone_by ? " (undone)" : ""}`),
  ];
  $("viewer-info").innerHTML = lines.join("<br>");
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// -- class tools, pre-labelling, export -------------------------------------------------

async function classTool(kind) {
  const active = state.activeClass;
  try {
    if (kind === "new") {
      const name = prompt("New class name");
      if (name) await loadClasses(await api("/api/classes", { name }));
      return;
    }
    if (!active) return toast("select a class in the list first");
    if (kind === "rename") {
      const name = prompt(`Rename ${active} to`, active);
      if (name && name !== active) {
        await loadClasses(await api("/api/classes/rename", { old: active, new: name }));
        state.activeClass = name;
      }
    } else if (kind === "merge") {
      const target = prompt(`Merge ${active} into which class?`);
      if (target) {
        await loadClasses(await api("/api/classes/merge", { sources: [active], target, user: user() }));
        state.activeClass = target;
      }
    } else if (kind === "group") {
      const group = prompt(`Group of ${active} (for abundances), e.g. benthic`,
        state.classes.find((c) => c.name === active)?.group || "");
      if (group !== null) await loadClasses(await api("/api/classes/group", { name: active, group }));
    } else if (kind === "accept") {
      const score = prompt(`Accept every prediction of ${active} with score at least`, "0.95");
      if (score) {
        const r = await api("/api/accept", { label: active, min_score: Number(score), user: user() });
        toast(`${r.changed} predictions accepted`);
      }
    }
    $("f-label").value = state.activeClass || "";
    await Promise.all([loadClasses(), loadProject(), loadPage(true)]);
  } catch (err) { toast(err.message); }
}

async function prelabel() {
  const bundle = $("bundle").value.trim();
  if (!bundle) return toast("enter the path of a model bundle folder");
  try { await api("/api/prelabel", { bundle }); } catch (err) { return toast(err.message); }
  const poll = setInterval(async () => {
    const s = await api("/api/prelabel");
    toast(s.running ? `pre-labelling ${s.done} / ${s.total}` : s.message);
    if (!s.running) {
      clearInterval(poll);
      await Promise.all([loadClasses(), loadProject(), loadPage(true)]);
    }
  }, 1000);
}

async function exportProject() {
  try {
    const r = await api("/api/export", { kind: $("export-kind").value, hard_links: $("hard-links").checked });
    toast(`exported to ${r.path}`);
  } catch (err) { toast(err.message); }
}

// -- events ----------------------------------------------------------------------------

document.addEventListener("keydown", async (event) => {
  if (event.target.matches("input, select, textarea")) return;
  const k = event.key, ctrl = event.ctrlKey || event.metaKey;
  let handled = true;
  try {
    if (/^[0-9]$/.test(k) && !ctrl) await labelWithKey(Number(k));
    else if (k === "ArrowRight") moveCursor(state.cursor + 1, event.shiftKey);
    else if (k === "ArrowLeft") moveCursor(state.cursor - 1, event.shiftKey);
    else if (k === "ArrowDown") moveCursor(state.cursor + columns(), event.shiftKey);
    else if (k === "ArrowUp") moveCursor(state.cursor - columns(), event.shiftKey);
    else if (k === "a" && ctrl) { state.selected = new Set(state.items.keys()); paintSelection(); }
    else if (k === "a") await applyLabel(targets(), (item) => item.pred_label ?? undefined);
    else if (k === "Delete" || k === "Backspace") await applyLabel(targets(), () => null);
    else if (k === "u" || (k === "z" && ctrl)) await undo();
    else if (k === "Enter" || k === " ") { if ($("viewer").hidden) await showViewer(); else $("viewer").hidden = true; }
    else if (k === "Escape") { $("viewer").hidden = true; state.selected.clear(); paintSelection(); }
    else if (k === "n" || k === "PageDown") await turnPage(1);
    else if (k === "p" || k === "PageUp") await turnPage(-1);
    else handled = false;
  } catch (err) { toast(err.message); }
  if (handled) event.preventDefault();
});

async function turnPage(step) {
  const next = state.offset + step * PAGE;
  if (next < 0 || next >= state.total) return;
  state.offset = next;
  await loadPage();
  $("grid").scrollTop = 0;
}

$("grid").addEventListener("click", (event) => {
  const tile = event.target.closest(".tile");
  if (!tile) return;
  const i = Number(tile.dataset.index);
  if (event.shiftKey) moveCursor(i, true);
  else if (event.ctrlKey || event.metaKey) {
    if (state.selected.size === 0) state.selected.add(state.cursor);
    state.selected.has(i) ? state.selected.delete(i) : state.selected.add(i);
    state.cursor = i;
    paintSelection();
  } else moveCursor(i, false);
});
$("grid").addEventListener("dblclick", () => showViewer());

for (const id of ["f-label", "f-status", "f-sample", "f-min", "f-max"]) {
  $(id).addEventListener("change", () => {
    if (id === "f-label") { state.activeClass = $(id).value || null; loadClasses(state.classes); }
    showView("grid");
  });
}
for (const b of document.querySelectorAll("[data-view]")) {
  b.addEventListener("click", () => showView(b.dataset.view).catch((err) => toast(err.message)));
}
$("prev").addEventListener("click", () => turnPage(-1));
$("next").addEventListener("click", () => turnPage(1));
$("undo").addEventListener("click", () => undo().catch((err) => toast(err.message)));
$("prelabel").addEventListener("click", prelabel);
$("export").addEventListener("click", exportProject);
$("user").addEventListener("change", () => localStorage.setItem("foramflow-user", $("user").value.trim()));
for (const kind of ["new", "rename", "merge", "group", "accept"]) {
  $(`class-${kind}`).addEventListener("click", () => classTool(kind));
}

(async () => {
  await Promise.all([loadProject(), loadClasses()]);
  await loadPage();
  $("grid").focus();
  document.body.dataset.ready = "1";
})();
