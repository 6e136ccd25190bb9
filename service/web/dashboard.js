// fedseg dashboard: plain JavaScript, no external scripts. Every data call carries the bearer
// token the user typed (kept in sessionStorage, so it is gone when the tab closes).
"use strict";

const TOKEN_KEY = "fedseg-token";
const POLL_MS = 2000;
let pollTimer = null;
// Study attributes (patient, date, modalities, description) by Study UID, from QIDO-RS: each
// search is audited on the server, so a study is looked up once per page, not every poll.
const studies = new Map();

function $(id) { return document.getElementById(id); }

function message(text) { $("message").textContent = text || ""; }

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

// A data call with the token: JSON, or the body as a "blob" or an array "buffer".
async function api(path, kind) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401 || response.status === 403) {
    throw new Error("the token was refused (" + response.status + "); enter a reader token");
  }
  if (!response.ok) { throw new Error(path + ": " + response.status + " " + response.statusText); }
  if (kind === "blob") { return response.blob(); }
  return kind === "buffer" ? response.arrayBuffer() : response.json();
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

// ---- DICOM JSON (QIDO-RS) --------------------------------------------------------------
const TAGS = {
  PatientName: "00100010", PatientID: "00100020", StudyDate: "00080020",
  StudyDescription: "00081030", ModalitiesInStudy: "00080061", StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E", Modality: "00080060", SeriesNumber: "00200011",
  SeriesDescription: "0008103E",
};

function dicomValues(item, keyword) {
  const values = ((item || {})[TAGS[keyword]] || {}).Value || [];
  return values.map((v) => (v && typeof v === "object" ? v.Alphabetic || "" : String(v)));
}

function dicomValue(item, keyword) { return dicomValues(item, keyword)[0] || ""; }

function studyDate(text) {
  return /^\d{8}$/.test(text) ? text.slice(0, 4) + "-" + text.slice(4, 6) + "-" + text.slice(6) : text;
}

function personName(text) { return text.replace(/\^+$/, "").replace(/\^/g, ", "); }

async function lookUpStudies(uids) {
  const unknown = [...new Set(uids)].filter((uid) => !studies.has(uid));
  if (!unknown.length) { return; }
  const found = await api("/dicomweb/studies?StudyInstanceUID=" + encodeURIComponent(unknown.join(",")));
  for (const uid of unknown) { studies.set(uid, null); }
  for (const item of found) { studies.set(dicomValue(item, "StudyInstanceUID"), item); }
}

function ohifLink(studyUid) {
  return "/viewer/viewer?StudyInstanceUIDs=" + encodeURIComponent(studyUid);
}

// ---- jobs list -------------------------------------------------------------------------
async function refreshJobs() {
  if (!token()) { return; }
  try {
    const jobs = await api("/v1/jobs?limit=100");
    await lookUpStudies(jobs.map((job) => job.study_instance_uid));
    const body = $("jobs-table").tBodies[0];
    body.replaceChildren();
    for (const job of jobs) {
      const row = document.createElement("tr");
      row.className = "job";
      row.dataset.jobId = job.id;
      const study = studies.get(job.study_instance_uid);
      cell(row, new Date(job.created_at).toLocaleString());
      cell(row, dicomValue(study, "PatientID"));
      cell(row, personName(dicomValue(study, "PatientName")));
      cell(row, studyDate(dicomValue(study, "StudyDate")));
      cell(row, dicomValues(study, "ModalitiesInStudy").join(", "));
      cell(row, dicomValue(study, "StudyDescription") || job.study_instance_uid).title =
        "Study " + job.study_instance_uid + ", job " + job.id;
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
    const blob = await api("/v1/jobs/" + job + "/results/" + kind + "?index=" + index, "blob");
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
  const deliveries = $("deliveries-table").tBodies[0];
  deliveries.replaceChildren();
  for (const d of job.deliveries || []) {
    const row = document.createElement("tr");
    row.className = "delivery";
    cell(row, d.destination);
    cell(row, d.state, "state-" + d.state);
    // Attempts so far; every attempt after the first is a retry.
    cell(row, d.attempts + (d.attempts > 1 ? " (" + (d.attempts - 1) + " retries)" : ""));
    cell(row, d.delivered_at ? new Date(d.delivered_at).toLocaleString() : "");
    cell(row, d.last_error);
    deliveries.appendChild(row);
  }
  $("deliveries-table").hidden = !(job.deliveries || []).length;
  $("deliveries-none").hidden = (job.deliveries || []).length > 0;
}

function unitOf(report, segment) {
  const pet = segment.pet || {};
  if (pet.suv_type) { return "SUV" + pet.suv_type; }
  return (segment.intensity || {}).unit || "";
}

// A structure's QC verdict (from the report's qc block, by segment number) and its reasons.
function qcStructureCell(row, verdict, withheld) {
  if (!verdict) { return cell(row, ""); }
  const text = verdict.status.toUpperCase() + (withheld ? " (withheld)" : "");
  const td = cell(row, text, "qc qc-" + verdict.status);
  td.title = verdict.reasons.join("\n");
  return td;
}

async function showMeasurements(job) {
  const body = $("measurements-table").tBodies[0];
  body.replaceChildren();
  const count = (job.results.measurements || []).length;
  for (let index = 0; index < count; index++) {
    const report = await api("/v1/jobs/" + job.id + "/results/measurements?index=" + index);
    const verdicts = {};
    for (const s of (report.qc || {}).structures || []) { verdicts[s.number] = s; }
    const withheld = new Set((report.qc || {}).withheld_numbers || []);
    for (const segment of report.segments || []) {
      const row = document.createElement("tr");
      const intensity = segment.intensity || {};
      const pet = segment.pet || {};
      const unit = unitOf(report, segment);
      const digits = segment.pet ? 2 : 1;
      const withUnit = (value) => (typeof value === "number" ? value.toFixed(digits) + " " + unit : "");
      // QC verdicts name a structure by its label number; the SEG renumbers segments.
      const verdict = verdicts[segment.label_number];
      cell(row, segment.name);
      cell(row, report.modality || "");
      cell(row, fixed(segment.volume_ml, 1));
      cell(row, withUnit(segment.pet ? pet.suv_mean : intensity.mean));
      // One maximum: SUVmax for PET (the same value the SR reports), else the maximum in HU.
      cell(row, withUnit(segment.pet ? pet.suv_max : intensity.max), "max");
      cell(row, withUnit(pet.suv_peak_local));
      cell(row, fixed(pet.mtv_ml, 1));
      cell(row, fixed(pet.tlg, 1));
      qcStructureCell(row, verdict, withheld.has(segment.label_number));
      body.appendChild(row);
    }
  }
}

async function showStudy(jobId) {
  try {
    const job = await api("/v1/jobs/" + jobId);
    await lookUpStudies([job.study_instance_uid]);
    const study = studies.get(job.study_instance_uid);
    const title = [personName(dicomValue(study, "PatientName")), dicomValue(study, "PatientID"),
      studyDate(dicomValue(study, "StudyDate")), dicomValue(study, "StudyDescription")];
    $("study-title").textContent = title.filter(Boolean).join(" · ") || "Study";
    $("study-ohif").href = ohifLink(job.study_instance_uid);
    $("study-uid").textContent = job.study_instance_uid;
    $("study-job").textContent = job.id.slice(0, 8);
    $("study-state").textContent = job.state;
    showResults(job);
    await showMeasurements(job);
    const described = await api("/v1/jobs/" + jobId + "/viewer");
    const series = new Map();
    for (const item of await api("/dicomweb/studies/" + job.study_instance_uid + "/series")) {
      series.set(dicomValue(item, "SeriesInstanceUID"), item);
    }
    const select = $("layer-select");
    select.replaceChildren();
    described.layers.forEach((layer) => {
      const option = document.createElement("option");
      option.value = String(layer.layer);
      const item = series.get(layer.series_instance_uid);
      const number = dicomValue(item, "SeriesNumber");
      const name = dicomValue(item, "SeriesDescription") || layer.series_instance_uid;
      option.textContent = layer.modality + (number ? " #" + number : "") + " " + name;
      option.title = layer.series_instance_uid;
      select.appendChild(option);
    });
    if (!described.layers.length) { message("this job has no segmentation to show"); return; }
    await openViewer(jobId, described.layers);
  } catch (error) { message(error.message); }
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
    // Sent here by the OHIF viewer for a token: go back to where the reader was.
    const next = new URLSearchParams(location.search).get("next");
    if (next && next.startsWith("/viewer/")) { location.assign(next); return; }
    route();
  });
  $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  initViewer();
  window.addEventListener("hashchange", route);
  route();
}

init();
