// fedseg dashboard: plain JavaScript, no external scripts. Every data call carries the bearer
// token the user typed (kept in sessionStorage, so it is gone when the tab closes).
"use strict";

const TOKEN_KEY = "fedseg-token";
const POLL_MS = 2000;
// Segment colours by segment number (1-based); the overlay is drawn at OVERLAY_ALPHA.
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
];
const OVERLAY_ALPHA = 0.5;

const viewer = { job: null, layers: [], layer: 0, slice: 0, image: null, labels: null };
let pollTimer = null;

function $(id) { return document.getElementById(id); }

function colour(number) { return PALETTE[(number - 1) % PALETTE.length]; }

function message(text) { $("message").textContent = text || ""; }

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, asBlob) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401 || response.status === 403) {
    throw new Error("the token was refused (" + response.status + "); enter a reader token");
  }
  if (!response.ok) { throw new Error(path + ": " + response.status + " " + response.statusText); }
  return asBlob ? response.blob() : response.json();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) { td.className = className; }
  row.appendChild(td);
  return td;
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "";
}

// QC flag of a job: skipped series, failed (withheld) and warned structures.
function qcCell(row, qc) {
  if (!qc) { return cell(row, ""); }
  let failed = 0, warned = 0, withheld = 0, skipped = 0;
  for (const series of qc.series) {
    skipped += series.skipped ? 1 : 0;
    withheld += series.withheld.length;
    for (const s of series.structures) {
      failed += s.status === "fail" ? 1 : 0;
      warned += s.status === "warn" ? 1 : 0;
    }
  }
  const parts = [];
  if (failed) { parts.push(failed + " failed" + (withheld ? " (" + withheld + " withheld)" : "")); }
  if (skipped) { parts.push(skipped + " series outside intended use"); }
  if (warned) { parts.push(warned + " warned"); }
  const kind = failed || skipped ? "qc-fail" : warned ? "qc-warn" : "qc-pass";
  return cell(row, parts.length ? "QC: " + parts.join(", ") : "QC passed", kind);
}

// ---- jobs list -------------------------------------------------------------------------
async function refreshJobs() {
  if (!token()) { return; }
  try {
    const jobs = await api("/v1/jobs?limit=100");
    const body = $("jobs-table").tBodies[0];
    body.replaceChildren();
    for (const job of jobs) {
      const row = document.createElement("tr");
      row.className = "job";
      row.dataset.jobId = job.id;
      cell(row, new Date(job.created_at).toLocaleString());
      cell(row, job.id.slice(0, 8));
      cell(row, job.study_instance_uid);
      cell(row, job.state, "state-" + job.state);
      qcCell(row, job.qc);
      const stages = Object.entries(job.progress || {});
      cell(row, stages.map(([k, v]) => k + " " + Math.round(v * 100) + "%").join(", "));
      cell(row, fixed((job.timings || {}).total_s, 1));
      cell(row, job.error);
      row.addEventListener("click", () => { location.hash = "#job/" + job.id; });
      body.appendChild(row);
    }
    $("jobs-updated").textContent = "updated " + new Date().toLocaleTimeString();
    message("");
  } catch (error) { message(error.message); }
}

// ---- models ----------------------------------------------------------------------------
async function showModels() {
  try {
    const models = await api("/v1/models");
    const body = $("models-table").tBodies[0];
    body.replaceChildren();
    for (const model of models) {
      const row = document.createElement("tr");
      cell(row, model.name);
      cell(row, model.version);
      cell(row, model.task);
      cell(row, model.modality);
      cell(row, (model.labels || []).join(", "));
      const pre = document.createElement("pre");
      pre.className = "provenance";
      pre.textContent = JSON.stringify(model.provenance, null, 1);
      cell(row, "").appendChild(pre);
      body.appendChild(row);
    }
    if (!models.length) { message("no models installed"); }
  } catch (error) { message(error.message); }
}

// ---- study view ------------------------------------------------------------------------
async function download(job, kind, index, name) {
  try {
    const blob = await api("/v1/jobs/" + job + "/results/" + kind + "?index=" + index, true);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) { message(error.message); }
}

function showResults(job) {
  const list = $("result-links");
  list.replaceChildren();
  for (const kind of ["seg", "rtstruct", "sr", "measurements"]) {
    (job.results[kind] || []).forEach((entry, index) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      const name = entry.path.split("/").slice(1).join("-");
      link.href = "#job/" + job.id;
      link.className = "result-link";
      link.dataset.kind = kind;
      link.textContent = kind.toUpperCase() + " " + (index + 1) + " (" + name + ")";
      link.addEventListener("click", (event) => {
        event.preventDefault();
        download(job.id, kind, index, name);
      });
      item.appendChild(link);
      list.appendChild(item);
    });
  }
  const deliveries = $("deliveries");
  deliveries.replaceChildren();
  for (const d of job.deliveries || []) {
    const item = document.createElement("li");
    item.textContent = d.destination + ": " + d.state + (d.last_error ? " (" + d.last_error + ")" : "");
    deliveries.appendChild(item);
  }
}

async function showMeasurements(job) {
  const body = $("measurements-table").tBodies[0];
  body.replaceChildren();
  const count = (job.results.measurements || []).length;
  for (let index = 0; index < count; index++) {
    const report = await api("/v1/jobs/" + job.id + "/results/measurements?index=" + index);
    const verdicts = {};
    for (const s of (report.qc || {}).structures || []) { verdicts[s.name] = s; }
    const withheld = new Set((report.qc || {}).withheld || []);
    for (const segment of report.segments || []) {
      const row = document.createElement("tr");
      const intensity = segment.intensity || {};
      const pet = segment.pet || {};
      const verdict = verdicts[segment.name];
      cell(row, segment.name);
      const status = verdict ? verdict.status : "";
      const qcText = status.toUpperCase() + (withheld.has(segment.name) ? " (withheld)" : "");
      cell(row, qcText, status ? "qc-" + status : "").title = verdict ? verdict.reasons.join("\n") : "";
      cell(row, fixed(segment.volume_ml, 2));
      cell(row, fixed(intensity.mean, 1));
      cell(row, fixed(intensity.max, 1));
      cell(row, fixed(pet.suv_max, 2));
      cell(row, fixed(pet.suv_peak_local, 2));
      cell(row, fixed(pet.mtv_ml, 2));
      cell(row, fixed(pet.tlg, 1));
      body.appendChild(row);
    }
  }
}

async function showStudy(jobId) {
  try {
    const job = await api("/v1/jobs/" + jobId);
    $("study-uid").textContent = job.study_instance_uid;
    $("study-job").textContent = job.id.slice(0, 8);
    $("study-state").textContent = job.state;
    showResults(job);
    await showMeasurements(job);
    const described = await api("/v1/jobs/" + jobId + "/viewer");
    viewer.job = jobId;
    viewer.layers = described.layers;
    const select = $("layer-select");
    select.replaceChildren();
    described.layers.forEach((layer) => {
      const option = document.createElement("option");
      option.value = String(layer.layer);
      option.textContent = layer.modality + " " + layer.series_instance_uid.slice(-12);
      select.appendChild(option);
    });
    if (!described.layers.length) { message("this job has no segmentation to show"); return; }
    await selectLayer(0);
  } catch (error) { message(error.message); }
}

async function selectLayer(index) {
  const layer = viewer.layers[index];
  viewer.layer = index;
  const range = $("slice-range");
  range.max = String(layer.slices - 1);
  range.value = String(layer.initial_slice);
  const legend = $("legend");
  legend.replaceChildren();
  for (const segment of layer.segments) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = "rgb(" + colour(segment.number).join(",") + ")";
    item.append(swatch, segment.name);
    legend.appendChild(item);
  }
  await loadSlice(layer.initial_slice);
}

async function loadSlice(k) {
  const base = "/v1/jobs/" + viewer.job + "/viewer/" + viewer.layer;
  const [image, labels] = await Promise.all([
    api(base + "/image/" + k, true).then(createImageBitmap),
    api(base + "/labels/" + k, true).then(createImageBitmap),
  ]);
  viewer.slice = k;
  viewer.image = image;
  viewer.labels = labels;
  const layer = viewer.layers[viewer.layer];
  $("slice-label").textContent = (k + 1) + " / " + layer.slices;
  draw();
  $("viewer-canvas").dataset.slice = String(k);
}

function overlayCanvas(labels) {
  const scratch = document.createElement("canvas");
  scratch.width = labels.width;
  scratch.height = labels.height;
  const context = scratch.getContext("2d");
  context.drawImage(labels, 0, 0);
  const pixels = context.getImageData(0, 0, labels.width, labels.height);
  const data = pixels.data;
  for (let p = 0; p < data.length; p += 4) {
    const number = data[p];
    if (number === 0) { data[p + 3] = 0; continue; }
    const [r, g, b] = colour(number);
    data[p] = r; data[p + 1] = g; data[p + 2] = b; data[p + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  return scratch;
}

function draw() {
  const canvas = $("viewer-canvas");
  const context = canvas.getContext("2d");
  const layer = viewer.layers[viewer.layer];
  // Physical aspect: columns along i (spacing[0]), rows along j (spacing[1]).
  const width = layer.columns * layer.spacing[0];
  const height = layer.rows * layer.spacing[1];
  const scale = Math.min(canvas.width / width, canvas.height / height);
  const w = width * scale, h = height * scale;
  const x = (canvas.width - w) / 2, y = (canvas.height - h) / 2;
  context.imageSmoothingEnabled = false;
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(viewer.image, x, y, w, h);
  if ($("overlay-toggle").checked) {
    context.globalAlpha = OVERLAY_ALPHA;
    context.drawImage(overlayCanvas(viewer.labels), x, y, w, h);
    context.globalAlpha = 1;
  }
  canvas.dataset.overlay = $("overlay-toggle").checked ? "on" : "off";
}

// ---- navigation ------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#jobs";
  const jobMatch = hash.match(/^#job\/([0-9a-f-]+)$/);
  $("jobs-view").hidden = hash !== "#jobs";
  $("models-view").hidden = hash !== "#models";
  $("study-view").hidden = !jobMatch;
  clearInterval(pollTimer);
  if (!token()) { message("enter a reader token (fedseg token create NAME --role reader)"); return; }
  if (hash === "#jobs") {
    refreshJobs();
    pollTimer = setInterval(refreshJobs, POLL_MS);
  } else if (hash === "#models") {
    showModels();
  } else if (jobMatch) {
    showStudy(jobMatch[1]);
  }
}

function init() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    route();
  });
  $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  $("slice-range").addEventListener("input", (event) => { loadSlice(Number(event.target.value)); });
  $("layer-select").addEventListener("change", (event) => { selectLayer(Number(event.target.value)); });
  $("overlay-toggle").addEventListener("change", () => { if (viewer.image) { draw(); } });
  window.addEventListener("hashchange", route);
  route();
}

init();
