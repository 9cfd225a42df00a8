// robustsam serve: prompt every model path on the same image, side by side, through the /api routes.
"use strict";

const TITLES = { robust: "RobustSAM", sam: "SAM", glesam: "GleSAM" };
const LQ_TYPES = ["LQ-1", "LQ-2", "LQ-3"];
const MASK_ALPHA = 140;
const DRAG_PIXELS = 4; // a press that moves less than this (screen pixels) is a click

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (selector) => document.querySelector(selector);

// What the page holds: per image key its objects ({box, points, labels}) and an undo stack.
const state = {
  info: null,
  images: [],
  key: null,
  size: [0, 0], // [width, height] of the current image
  objects: {},
  current: {},
  history: {},
  masks: {}, // path -> list of decoded masks (Uint8Array) per object, or null
  everything: {}, // path -> list of decoded masks while "segment everything" is shown
  busy: 0,
  serial: 0, // edits, images and views: answers for an older one are dropped
  views: 0, // images or views shown
};
window.robustsam = { state, decodeRle };

async function api(path, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function status(text, isError = false) {
  const element = $("#status");
  element.textContent = text;
  element.classList.toggle("error", isError);
}

async function busy(task) {
  state.busy += 1;
  document.body.dataset.busy = String(state.busy);
  try {
    return await task();
  } catch (error) {
    status(error.message, true);
    return null;
  } finally {
    state.busy -= 1;
    document.body.dataset.busy = String(state.busy);
  }
}

// The same colours as `robustsam segment --overlay` (golden-ratio hues).
function colour(index) {
  const hue = (0.1 + index * 0.618033988749895) % 1.0;
  const [s, v] = [0.75, 1.0];
  const i = Math.floor(hue * 6), f = hue * 6 - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return rgb.map((c) => Math.round(c * 255));
}

// COCO compressed RLE (pycocotools' string form, column-major) -> row-major Uint8Array of 0/1.
function decodeRle(rle) {
  const [height, width] = rle.size;
  const text = rle.counts;
  const counts = [];
  for (let p = 0; p < text.length;) {
    let value = 0, shift = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      p += 1;
      shift += 5;
      if (!more && (c & 0x10)) value |= -1 << shift;
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  const mask = new Uint8Array(height * width);
  let index = 0;
  counts.forEach((run, k) => {
    if (k % 2 === 1) {
      for (let i = index; i < index + run; i++) mask[(i % height) * width + Math.floor(i / height)] = 1;
    }
    index += run;
  });
  return mask;
}

function degradation() {
  const type = $("#degradation").value;
  if (!type) return null;
  return { type, level: Number($("#level").value), seed: Number($("#seed").value) || 0 };
}

function objects() { return state.objects[state.key]; }

function promptOf(object) {
  const prompt = {};
  if (object.box) prompt.box = object.box;
  if (object.points.length) { prompt.points = object.points; prompt.labels = object.labels; }
  return prompt;
}

function isEmpty(object) { return !object.box && object.points.length === 0; }

// ---- panels ------------------------------------------------------------------------------------

function buildPanels() {
  const panels = $("#panels");
  panels.replaceChildren();
  for (const path of state.info.models) {
    const panel = $("#panel-template").content.firstElementChild.cloneNode(true);
    panel.dataset.path = path;
    panel.querySelector(".title").textContent = TITLES[path] || path;
    panel.querySelector("canvas.image").id = `image-${path}`;
    panel.querySelector("canvas.mask").id = `mask-${path}`;
    attachPointer(panel.querySelector(".stage"));
    panels.append(panel);
  }
}

function panel(path) { return $(`.panel[data-path="${path}"]`); }

function drawMasks(path) {
  const canvas = panel(path).querySelector("canvas.mask");
  const [width, height] = state.size;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  const layers = state.everything[path] || state.masks[path] || [];
  layers.forEach((mask, index) => {
    if (!mask) return;
    const [r, g, b] = colour(index);
    for (let i = 0; i < mask.length; i++) {
      if (mask[i]) { pixels.data.set([r, g, b, MASK_ALPHA], 4 * i); }
    }
  });
  context.putImageData(pixels, 0, 0);
  canvas.dataset.objects = String(layers.filter(Boolean).length);
  canvas.dataset.serial = String(state.serial);
}

function drawPrompts(drag) {
  const [width, height] = state.size;
  for (const svg of document.querySelectorAll(".stage svg")) {
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const shapes = [];
    objects().forEach((object, index) => {
      const stroke = `rgb(${colour(index).join(",")})`;
      if (object.box) {
        const [x0, y0, x1, y1] = object.box;
        shapes.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" stroke="${stroke}"/>`);
      }
      object.points.forEach(([x, y], k) => {
        const fill = object.labels[k] === 1 ? "#2ecc40" : "#ff4136";
        shapes.push(`<circle cx="${x}" cy="${y}" r="${Math.max(width, height) / 80}" fill="${fill}"/>`);
      });
    });
    if (drag) shapes.push(`<rect class="drag" x="${drag[0]}" y="${drag[1]}" width="${drag[2] - drag[0]}" height="${drag[3] - drag[1]}"/>`);
    svg.innerHTML = shapes.join("");
  }
  const list = $("#objects");
  list.replaceChildren(...objects().map((object, index) => {
    const item = document.createElement("li");
    item.classList.toggle("current", index === state.current[state.key]);
    const parts = [];
    if (object.box) parts.push(`box [${object.box.join(", ")}]`);
    if (object.points.length) parts.push(`${object.points.length} point(s)`);
    item.innerHTML = `<span class="swatch" style="background: rgb(${colour(index).join(",")})"></span>`;
    item.append(`object ${index + 1}: ${parts.join(", ") || "empty"}`);
    item.onclick = () => { state.current[state.key] = index; drawPrompts(); };
    return item;
  }));
}

// ---- prompting ---------------------------------------------------------------------------------

function imagePoint(stage, event) {
  const rect = stage.getBoundingClientRect();
  const [width, height] = state.size;
  const x = Math.min(Math.max((event.clientX - rect.left) / rect.width * width, 0), width);
  const y = Math.min(Math.max((event.clientY - rect.top) / rect.height * height, 0), height);
  return [x, y];
}

function attachPointer(stage) {
  let start = null;
  stage.addEventListener("contextmenu", (event) => event.preventDefault());
  stage.addEventListener("pointerdown", (event) => {
    if (!state.key) return;
    stage.setPointerCapture(event.pointerId);
    start = { event, point: imagePoint(stage, event) };
  });
  stage.addEventListener("pointermove", (event) => {
    if (!start || !dragged(start.event, event)) return;
    drawPrompts(boxOf(start.point, imagePoint(stage, event)));
  });
  stage.addEventListener("pointerup", (event) => {
    if (!start) return;
    const begun = start;
    start = null;
    if (dragged(begun.event, event)) {
      const box = boxOf(begun.point, imagePoint(stage, event));
      if (box[2] > box[0] && box[3] > box[1]) edit((object) => { object.box = box; });
      else drawPrompts();
    } else {
      const [x, y] = begun.point.map(Math.round);
      const label = begun.event.button === 2 || begun.event.shiftKey ? 0 : 1;
      edit((object) => { object.points.push([x, y]); object.labels.push(label); });
    }
  });
}

function dragged(from, to) {
  return Math.hypot(to.clientX - from.clientX, to.clientY - from.clientY) >= DRAG_PIXELS;
}

function boxOf([xa, ya], [xb, yb]) {
  return [Math.round(Math.min(xa, xb)), Math.round(Math.min(ya, yb)), Math.round(Math.max(xa, xb)), Math.round(Math.max(ya, yb))];
}

// Applies a change to the current object (made first if there is none), remembering the state before.
function edit(change) {
  const key = state.key;
  state.history[key].push(JSON.stringify({ objects: state.objects[key], current: state.current[key] }));
  if (state.current[key] === undefined || state.current[key] >= state.objects[key].length) {
    state.objects[key].push({ box: null, points: [], labels: [] });
    state.current[key] = state.objects[key].length - 1;
  }
  change(state.objects[key][state.current[key]]);
  refresh(state.current[key]);
}

function undo() {
  const key = state.key;
  const before = key && state.history[key].pop();
  if (!before) return;
  const restored = JSON.parse(before);
  state.objects[key] = restored.objects;
  state.current[key] = restored.current;
  refresh();
}

function newObject() {
  if (!state.key) return;
  const list = objects();
  if (list.length && isEmpty(list[list.length - 1])) return;
  state.current[state.key] = list.length; // made by the next prompt
  drawPrompts();
}

function clearObjects() {
  if (!state.key || !objects().length) return;
  state.history[state.key].push(JSON.stringify({ objects: objects(), current: state.current[state.key] }));
  state.objects[state.key] = [];
  state.current[state.key] = 0;
  refresh();
}

// Asks every model path for the masks of the objects (only `changed` when given) and draws them.
async function refresh(changed) {
  state.serial += 1;
  const serial = state.serial;
  const key = state.key;
  state.everything = {};
  drawPrompts();
  const view = degradation();
  await Promise.all(state.info.models.map((path) => busy(async () => {
    const previous = state.masks[path] || [];
    const masks = await Promise.all(objects().map(async (object, index) => {
      if (isEmpty(object)) return null;
      if (changed !== undefined && index !== changed && previous[index]) return previous[index];
      const body = { image: key, model: path, degradation: view, mask_format: "rle", ...promptOf(object) };
      const answer = await (await api("/api/predict", body)).json();
      panel(path).querySelector(".score").textContent = `predicted IoU ${answer.mask.score.toFixed(3)} · ${(answer.seconds * 1000).toFixed(0)} ms`;
      return decodeRle(answer.mask.rle);
    }));
    if (serial !== state.serial || key !== state.key) return; // a newer edit or image won
    state.masks[path] = masks;
    drawMasks(path);
  })));
  if (serial === state.serial) status(`${objects().length} object(s) on ${key}`);
}

async function everything() {
  if (!state.key) return;
  state.serial += 1;
  const serial = state.serial;
  status("segmenting everything ...");
  await Promise.all(state.info.models.map((path) => busy(async () => {
    const answer = await (await api("/api/everything", { image: state.key, model: path, degradation: degradation() })).json();
    if (serial !== state.serial) return;
    state.everything[path] = answer.masks.map((mask) => decodeRle(mask.rle));
    panel(path).querySelector(".score").textContent = `${answer.masks.length} masks · ${answer.seconds.toFixed(1)} s`;
    drawMasks(path);
  })));
  if (serial === state.serial) status("segment everything: shown until the next prompt");
}

async function save() {
  const prompts = {};
  for (const image of state.images) {
    const list = (state.objects[image.key] || []).filter((object) => !isEmpty(object));
    if (list.length) prompts[image.key] = list.map(promptOf);
  }
  const answer = await busy(async () => (await api("/api/save", { prompts })).json());
  if (answer) status(`saved ${answer.masks} masks of ${answer.images} image(s): ${answer.prompts_file}\nreplay: ${answer.replay}`);
}

// ---- images and views --------------------------------------------------------------------------

async function showImage(key) {
  state.key = key;
  state.serial += 1;
  state.masks = {};
  state.everything = {};
  state.objects[key] = state.objects[key] || [];
  state.history[key] = state.history[key] || [];
  state.current[key] = state.current[key] ?? state.objects[key].length;
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("current", button.dataset.key === key);
  await loadView();
}

async function loadView() {
  const key = state.key;
  const view = degradation();
  const loading = ++state.views; // a later image or view wins over this one
  state.serial += 1; // masks still coming for the previous view are dropped
  const query = new URLSearchParams({ key });
  if (view) { query.set("type", view.type); query.set("level", view.level); query.set("seed", view.seed); }
  await busy(async () => {
    const bitmap = await createImageBitmap(await (await api(`/api/image?${query}`)).blob());
    if (loading !== state.views) return;
    state.size = [bitmap.width, bitmap.height];
    for (const canvas of document.querySelectorAll("canvas.image")) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
    }
    state.masks = {};
    state.info.models.forEach(drawMasks);
    status(`embedding ${key} ...`);
    await Promise.all(state.info.models.map((path) => api("/api/embed", { image: key, model: path, degradation: view })));
  });
  if (loading === state.views) await refresh();
}

function levelEnabled() {
  const type = $("#degradation").value;
  $("#level").disabled = !type || LQ_TYPES.includes(type);
  $("#seed").disabled = !type;
}

async function start() {
  state.info = await (await api("/api/info")).json();
  for (const type of state.info.degradations) $("#degradation").add(new Option(type, type));
  for (const level of state.info.levels) $("#level").add(new Option(String(level), String(level), level === 3, level === 3));
  levelEnabled();
  $("#save").disabled = !state.info.save;
  $("#save").title = state.info.save ? "Write the prompts and masks under -o" : "start the server with -o OUTPUT to save";
  buildPanels();
  state.images = (await (await api("/api/images")).json()).images;
  const saved = await (await api("/api/prompts")).json();
  for (const [key, prompts] of Object.entries(saved)) {
    state.objects[key] = prompts.map((p) => ({ box: p.box || null, points: p.points || [], labels: p.labels || [] }));
  }
  $("#images").replaceChildren(...state.images.map((image) => {
    const button = document.createElement("button");
    button.dataset.key = image.key;
    button.textContent = image.key;
    button.title = `${image.key} (${image.width}x${image.height})`;
    button.onclick = () => showImage(image.key);
    return button;
  }));
  if (!state.images.length) { status("no images in this folder", true); return; }
  await showImage(state.images[0].key);
}

for (const id of ["#degradation", "#level", "#seed"]) $(id).addEventListener("change", () => { levelEnabled(); if (state.key) loadView(); });
$("#new-object").onclick = newObject;
$("#undo").onclick = undo;
$("#clear").onclick = clearObjects;
$("#everything").onclick = everything;
$("#save").onclick = save;
document.addEventListener("keydown", (event) => {
  if (event.target.matches("input, select")) return;
  if (event.key === "n") newObject();
  if (event.key === "z") undo(); // with or without Ctrl
});
start().catch((error) => status(error.message, true));
