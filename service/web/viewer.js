// fedseg dashboard: the slice viewer. The server sends each plane's values (HU, SUV, MR values)
// and segment numbers as raw arrays, so windowing, the value under the cursor and the overlay
// are all drawn here. Planes are laid out as the server says (the radiological convention:
// patient's right on the viewer's left, anterior or head up), with its letters at the edges.
// Loaded before dashboard.js, which opens a job's layers with openViewer().
"use strict";

// Segment colours by segment number (1-based); beyond the palette, hues spread by the golden
// angle. The overlay is drawn at OVERLAY_ALPHA.
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
];
const OVERLAY_ALPHA = 0.5;
// A drag across this many pixels changes the window by its own width.
const DRAG_PIXELS = 256;

const viewer = {
  job: null, layers: [], layer: 0, slice: 0, values: null, labels: null, window: null,
  image: null, overlay: null, matrix: null, drag: null, loading: 0,
};

function segmentColour(number) {
  if (number <= PALETTE.length) { return PALETTE[number - 1]; }
  const hue = (number * 137.508) % 360 / 60;
  const x = 1 - Math.abs((hue % 2) - 1);
  const sector = [[1, x, 0], [x, 1, 0], [0, 1, x], [0, x, 1], [x, 0, 1], [1, 0, x]][Math.floor(hue)];
  return sector.map((c) => Math.round(40 + 200 * c));
}

function currentLayer() { return viewer.layers[viewer.layer]; }

// Digits a value is shown with: integers as stored (HU), SUV with 2 as in the measurements.
function valueDigits(layer) {
  if (layer.value_type === "int16") { return 0; }
  return layer.modality === "PT" ? 2 : 1;
}

function withUnit(layer, value) {
  const text = value.toFixed(valueDigits(layer)).replace("-", "\u2212");
  return layer.unit ? text + " " + layer.unit : text + " (stored value, no unit)";
}

function mm(value) { return value.toFixed(1).replace("-", "\u2212"); }

// ---- layers and planes -------------------------------------------------------------------
async function openViewer(jobId, layers) {
  delete $("viewer-canvas").dataset.slice;  // set again once this job's first plane is drawn
  viewer.job = jobId;
  viewer.layers = layers;
  if (layers.length) { await selectLayer(0); }
}

async function selectLayer(index) {
  const layer = viewer.layers[index];
  viewer.layer = index;
  viewer.slice = -1;
  viewer.values = null;
  $("slice-range").max = String(layer.slices - 1);
  const legend = $("legend");
  legend.replaceChildren();
  for (const segment of layer.segments) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = "rgb(" + segmentColour(segment.number).join(",") + ")";
    item.append(swatch, segment.name);
    legend.appendChild(item);
  }
  const presets = $("window-preset");
  presets.replaceChildren();
  layer.presets.forEach((preset, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = preset.name;
    presets.appendChild(option);
  });
  const custom = document.createElement("option");
  custom.value = "custom";
  custom.textContent = "Custom (drag)";
  custom.hidden = true;
  presets.appendChild(custom);
  for (const side of ["left", "right", "top", "bottom"]) {
    $("marker-" + side).textContent = layer.layout.markers[side];
  }
  $("viewer-notes").textContent = (layer.notes || []).join(" ");
  viewer.image = document.createElement("canvas");
  viewer.image.width = layer.columns;
  viewer.image.height = layer.rows;
  viewer.overlay = document.createElement("canvas");
  viewer.overlay.width = layer.columns;
  viewer.overlay.height = layer.rows;
  viewer.matrix = layoutMatrix(layer, $("viewer-canvas"));
  setWindow(layer.presets[0].low, layer.presets[0].high, "0");
  await loadSlice(layer.initial_slice);
}

async function loadSlice(k) {
  const layer = currentLayer();
  const base = "/v1/jobs/" + viewer.job + "/viewer/" + viewer.layer;
  const ticket = ++viewer.loading;
  const [values, labels] = await Promise.all([
    api(base + "/values/" + k, "buffer"), api(base + "/labels/" + k, "buffer"),
  ]);
  if (ticket !== viewer.loading) { return; }  // a later slice was asked for meanwhile
  viewer.values = layer.value_type === "int16" ? new Int16Array(values) : new Float32Array(values);
  viewer.labels = new Uint16Array(labels);
  viewer.slice = k;
  // Numbered as OHIF numbers them (axial from the head down), whatever the stored order.
  const shown = layer.layout.order.indexOf(k);
  $("slice-range").value = String(shown);
  $("slice-label").textContent = (shown + 1) + " / " + layer.slices;
  const position = $("slice-position");
  position.textContent = "Loc " + mm(layer.layout.positions_mm[k]) + " mm";
  position.title = "position of the plane along its normal, positive towards " +
    layer.layout.normal_letter + " (patient coordinates)";
  renderOverlay();
  renderImage();
  $("viewer-canvas").dataset.slice = String(k);
}

// ---- drawing -------------------------------------------------------------------------------
function renderImage() {
  const { low, high } = viewer.window;
  const context = viewer.image.getContext("2d");
  const pixels = context.createImageData(viewer.image.width, viewer.image.height);
  const data = pixels.data;
  const values = viewer.values;
  const scale = 255 / (high - low);
  for (let p = 0, q = 0; p < values.length; p++, q += 4) {
    const grey = (values[p] - low) * scale;  // Uint8ClampedArray clips and rounds
    data[q] = grey; data[q + 1] = grey; data[q + 2] = grey; data[q + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  draw();
}

function renderOverlay() {
  const context = viewer.overlay.getContext("2d");
  const pixels = context.createImageData(viewer.overlay.width, viewer.overlay.height);
  const data = pixels.data;
  const labels = viewer.labels;
  for (let p = 0, q = 0; p < labels.length; p++, q += 4) {
    if (labels[p] === 0) { continue; }
    const [r, g, b] = segmentColour(labels[p]);
    data[q] = r; data[q + 1] = g; data[q + 2] = b; data[q + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}

// Stored pixel (column, row) → canvas: the layout's flips or transposition, each axis scaled
// by its spacing in mm, the whole plane fitted and centred.
function layoutMatrix(layer, canvas) {
  const a = layer.affine;
  const columnMm = Math.hypot(a[0][0], a[1][0], a[2][0]);
  const rowMm = Math.hypot(a[0][1], a[1][1], a[2][1]);
  const { right, down } = layer.layout;
  const m = new DOMMatrix([right[0] * columnMm, down[0] * columnMm,
    right[1] * rowMm, down[1] * rowMm, 0, 0]);
  const corners = [[0, 0], [layer.columns, 0], [0, layer.rows], [layer.columns, layer.rows]]
    .map(([x, y]) => m.transformPoint(new DOMPoint(x, y)));
  const xs = corners.map((p) => p.x), ys = corners.map((p) => p.y);
  const left = Math.min(...xs), top = Math.min(...ys);
  const width = Math.max(...xs) - left, height = Math.max(...ys) - top;
  const scale = Math.min(canvas.width / width, canvas.height / height);
  return new DOMMatrix()
    .translate((canvas.width - width * scale) / 2, (canvas.height - height * scale) / 2)
    .scale(scale)
    .translate(-left, -top)
    .multiply(m);
}

function draw() {
  const canvas = $("viewer-canvas");
  const context = canvas.getContext("2d");
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  context.setTransform(viewer.matrix);
  context.drawImage(viewer.image, 0, 0);
  const overlay = $("overlay-toggle").checked;
  if (overlay) {
    context.globalAlpha = OVERLAY_ALPHA;
    context.drawImage(viewer.overlay, 0, 0);
    context.globalAlpha = 1;
  }
  context.setTransform(1, 0, 0, 1, 0, 0);
  canvas.dataset.overlay = overlay ? "on" : "off";
}

// ---- window/level --------------------------------------------------------------------------
function setWindow(low, high, preset) {
  const layer = currentLayer();
  viewer.window = { low, high };
  const digits = layer.value_type === "int16" ? 0 : 2;
  const width = (high - low).toFixed(digits), level = ((high + low) / 2).toFixed(digits);
  $("window-label").textContent = ("W " + width + " L " + level + " " + layer.unit).trim();
  const select = $("window-preset");
  select.value = preset;
  select.querySelector("option[value=custom]").hidden = preset !== "custom";
  const canvas = $("viewer-canvas");
  canvas.dataset.low = String(low);
  canvas.dataset.high = String(high);
}

function choosePreset(value) {
  const preset = currentLayer().presets[Number(value)];
  setWindow(preset.low, preset.high, value);
  if (viewer.values) { renderImage(); }
}

// Drag right to widen the window, down to raise its level (as most PACS do).
function dragWindow(event) {
  const { x, y, low, high } = viewer.drag;
  const step = (high - low) / DRAG_PIXELS;
  const width = Math.max((high - low) + (event.clientX - x) * step, (high - low) / 100);
  const level = (high + low) / 2 + (event.clientY - y) * step;
  setWindow(level - width / 2, level + width / 2, "custom");
  renderImage();
}

// ---- the value under the cursor ------------------------------------------------------------
function voxelAt(event) {
  const canvas = $("viewer-canvas");
  const x = event.offsetX * canvas.width / canvas.clientWidth;
  const y = event.offsetY * canvas.height / canvas.clientHeight;
  const p = viewer.matrix.inverse().transformPoint(new DOMPoint(x, y));
  const column = Math.floor(p.x), row = Math.floor(p.y);
  const layer = currentLayer();
  if (column < 0 || row < 0 || column >= layer.columns || row >= layer.rows) { return null; }
  return { i: column, j: row, k: viewer.slice };
}

// Where voxel (i, j) of the shown plane is drawn on the canvas (its centre), in CSS pixels.
function screenOf(i, j) {
  const canvas = $("viewer-canvas");
  const p = viewer.matrix.transformPoint(new DOMPoint(i + 0.5, j + 0.5));
  return { x: p.x * canvas.clientWidth / canvas.width, y: p.y * canvas.clientHeight / canvas.height };
}

function showCursor(voxel) {
  const value = $("cursor-value"), where = $("cursor-voxel"), patient = $("cursor-patient");
  const segment = $("cursor-segment");
  if (!voxel || viewer.values === null) {
    for (const element of [value, where, patient, segment]) { element.textContent = ""; }
    return;
  }
  const layer = currentLayer();
  const p = voxel.j * layer.columns + voxel.i;
  const a = layer.affine;
  const lps = [0, 1, 2].map((r) => a[r][0] * voxel.i + a[r][1] * voxel.j + a[r][2] * voxel.k + a[r][3]);
  value.textContent = withUnit(layer, viewer.values[p]);
  where.textContent = "voxel (" + voxel.i + ", " + voxel.j + ", " + voxel.k + ")";
  patient.textContent = "LPS (" + lps.map(mm).join(", ") + ") mm";
  const number = viewer.labels[p];
  const named = layer.segments.find((s) => s.number === number);
  segment.textContent = number ? "segment " + number + (named ? " " + named.name : "") : "";
}

function initViewer() {
  const canvas = $("viewer-canvas");
  $("slice-range").addEventListener("input", (event) => {
    loadSlice(currentLayer().layout.order[Number(event.target.value)]);
  });
  $("layer-select").addEventListener("change", (event) => { selectLayer(Number(event.target.value)); });
  $("overlay-toggle").addEventListener("change", () => { if (viewer.values) { draw(); } });
  $("window-preset").addEventListener("change", (event) => { choosePreset(event.target.value); });
  canvas.addEventListener("mousedown", (event) => {
    if (event.button !== 0 || !viewer.values) { return; }
    viewer.drag = { x: event.clientX, y: event.clientY, ...viewer.window };
    event.preventDefault();
  });
  window.addEventListener("mouseup", () => { viewer.drag = null; });
  canvas.addEventListener("mousemove", (event) => {
    if (viewer.drag) { dragWindow(event); }
    showCursor(voxelAt(event));
  });
  canvas.addEventListener("mouseleave", () => showCursor(null));
  canvas.addEventListener("wheel", (event) => {
    const layer = currentLayer();
    if (!layer || viewer.slice < 0) { return; }
    event.preventDefault();
    // Scrolling down goes to the next plane (axial: towards the feet), as in OHIF.
    const order = layer.layout.order;
    const next = order.indexOf(viewer.slice) + Math.sign(event.deltaY);
    if (next >= 0 && next < order.length) { loadSlice(order[next]); }
  }, { passive: false });
}
