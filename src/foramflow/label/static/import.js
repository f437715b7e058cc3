// foramflow import: bring images into the project, then sort and filter them by size and shape.
"use strict";

const $ = (id) => document.getElementById(id);
const MEASURES = ["equivalent_diameter_um", "area_um2", "aspect_ratio", "circularity", "solidity", "concavity"];
const HEADINGS = { equivalent_diameter_um: "diameter µm", area_um2: "area µm²", aspect_ratio: "aspect",
  circularity: "circularity", solidity: "solidity", concavity: "concavity" };
const table = { sort: "id", descending: false, measure: null, low: null, high: null };

async function guarded(work) {
  try { await work(); } catch (err) { toast(`error: ${err.message}`); $("result").textContent = `error: ${err.message}`; }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

const round = (v) => (v === null || v === undefined ? "" : Number(v).toPrecision(3));

// -- import ----------------------------------------------------------------------------

function sampleRequest() {
  const rule = document.querySelector("input[name=rule]:checked").value;
  const body = { folder: $("folder").value.trim() };
  if (rule === "regex") body.regex = $("regex").value;
  if (rule === "table") body.table = $("table").value.trim();
  return body;
}

function segmentRequest() {
  const threshold = $("threshold").value.trim();
  return { ...sampleRequest(), options: {
    pixels_per_mm: Number($("ppm").value), min_area_um2: Number($("min-area").value),
    threshold: threshold === "auto" ? "auto" : Number(threshold), split: $("split").checked } };
}

async function previewSamples() {
  const data = await api("/api/import/samples", sampleRequest());
  const body = document.querySelector("#samples-table tbody");
  body.replaceChildren(...data.samples.map((s) => {
    const tr = document.createElement("tr");
    tr.append(cell(s.sample, "text"), cell(s.depth_cm ?? ""), cell(s.images));
    return tr;
  }));
  $("samples-total").textContent = `${data.total} images in ${data.samples.length} samples`;
  $("samples-preview").hidden = false;
}

async function previewTray() {
  $("result").textContent = "segmenting one tray…";
  const data = await api("/api/import/segment/preview", segmentRequest());
  $("tray-preview").src = data.image;
  $("tray-count").textContent = `${data.tray}: ${data.count} particles (1 of ${data.trays} trays)`;
  $("tray-figure").hidden = false;
  $("result").textContent = "";
}

async function runImport() {
  const kind = $("kind").value;
  if (kind === "trays") {
    await api("/api/import/segment", segmentRequest());
    pollSegment();
    return;
  }
  const data = kind === "particletrieur"
    ? await api("/api/import/particletrieur", { project: $("folder").value.trim() })
    : await api(`/api/import/${kind}`, sampleRequest());
  $("result").textContent = `${data.added} images added`;
  await loadParticles();
}

async function pollSegment() {
  const s = await api("/api/import/segment");
  $("job-state").textContent = s.running ? `segmenting ${s.done}/${s.total}` : "";
  $("result").textContent = s.running ? `segmenting ${s.done} of ${s.total} trays…` : s.message;
  if (s.running) setTimeout(pollSegment, 500);
  else await loadParticles();
}

// -- particles -------------------------------------------------------------------------

function headings() {
  const row = document.querySelector("#particles thead tr");
  const columns = [["", null], ["id", "id"], ["sample", "sample"], ["label", "label"],
    ...MEASURES.map((m) => [HEADINGS[m], m]), ["", null]];
  row.replaceChildren(...columns.map(([text, key]) => {
    const th = document.createElement("th");
    th.textContent = text;
    if (key) {
      th.dataset.sort = key;
      if (["sample", "label"].includes(key)) th.className = "text";
      th.addEventListener("click", () => {
        table.descending = table.sort === key ? !table.descending : false;
        table.sort = key;
        guarded(loadParticles);
      });
    }
    return th;
  }));
  $("filter-measure").replaceChildren(...["", ...MEASURES].map((m) => new Option(m ? HEADINGS[m] : "none", m)));
}

async function loadParticles() {
  const query = new URLSearchParams({ sort: table.sort, descending: table.descending, limit: 500 });
  if (table.measure) {
    query.set("measure", table.measure);
    if (table.low !== null) query.set("low", table.low);
    if (table.high !== null) query.set("high", table.high);
  }
  const data = await api(`/api/morphology?${query}`);
  document.querySelectorAll("#particles th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.sort === table.sort);
    th.classList.toggle("desc", th.dataset.sort === table.sort && table.descending);
  });
  const body = document.querySelector("#particles tbody");
  body.replaceChildren(...data.items.map((item) => {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    const image = document.createElement("td");
    const img = document.createElement("img");
    img.src = item.thumb; img.alt = item.name; img.loading = "lazy";
    image.append(img);
    const more = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "more like this"; button.className = "similar";
    button.addEventListener("click", () => guarded(() => showSimilar(item)));
    more.append(button);
    tr.append(image, cell(item.id), cell(item.sample ?? "", "text"), cell(item.label ?? "", "text"),
      ...MEASURES.map((m) => cell(round(item[m]))), more);
    tr.dataset.label = item.label ?? "";
    return tr;
  }));
  $("particles-total").textContent = `${data.total} images`;
}

const picked = new Set();  // the image asked about and the neighbours clicked

async function showSimilar(item) {
  const data = await api(`/api/images/${item.id}/similar?n=12`);
  picked.clear();
  picked.add(item.id);
  $("similar-of").textContent = `#${item.id} ${item.name}`;
  $("suggestions").replaceChildren(...(data.suggestions.length ? data.suggestions.map((s) => {
    const chip = document.createElement("span");
    chip.textContent = `${s.label} ${(100 * s.score).toFixed(0)} %`;
    chip.title = `${s.votes} of the nearest validated images`;
    chip.addEventListener("click", () => { $("similar-label").value = s.label; });
    return chip;
  }) : [document.createTextNode("no validated neighbours yet")]));
  $("similar-tiles").replaceChildren(...data.items.map((i) => {
    const img = document.createElement("img");
    img.src = i.thumb; img.title = `#${i.id} ${i.label ?? ""} (click to label it too)`;
    img.dataset.id = i.id;
    img.addEventListener("click", () => {
      if (picked.has(i.id)) picked.delete(i.id); else picked.add(i.id);
      img.classList.toggle("picked", picked.has(i.id));
    });
    return img;
  }));
  $("similar").hidden = false;
}

async function labelSimilar() {
  const label = $("similar-label").value.trim();
  const data = await api("/api/labels", { ids: [...picked], label: label || null });
  toast(`${data.changed} images labelled ${label}`);
  await loadParticles();
}

async function measure() {
  const data = await api("/api/morphology/measure", { pixels_per_mm: Number($("ppm").value) });
  toast(`${data.measured} measured, ${data.failed} without a particle`);
  await loadParticles();
}

function applyFilter() {
  const number = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
  table.measure = $("filter-measure").value || null;
  table.low = number("low");
  table.high = number("high");
  return loadParticles();
}

function init() {
  headings();
  $("kind").addEventListener("change", () => {
    $("segment-options").hidden = $("kind").value !== "trays";
    $("sample-rule").hidden = $("kind").value === "particletrieur";
  });
  $("preview-samples").addEventListener("click", () => guarded(previewSamples));
  $("preview-tray").addEventListener("click", () => guarded(previewTray));
  $("run-import").addEventListener("click", () => guarded(runImport));
  $("measure").addEventListener("click", () => guarded(measure));
  $("apply-filter").addEventListener("click", () => guarded(applyFilter));
  $("label-similar").addEventListener("click", () => guarded(labelSimilar));
  guarded(async () => { await loadParticles(); await pollSegment(); })
    .then(() => { document.body.dataset.ready = "1"; });
}

init();
