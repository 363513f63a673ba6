// rldiff drag demo page: plain JavaScript, no libraries. Protocol: docs/demo.md.
"use strict";

const $ = (id) => document.getElementById(id);
const drawCanvas = $("draw"), videoCanvas = $("video");
const dctx = drawCanvas.getContext("2d"), vctx = videoCanvas.getContext("2d");
dctx.imageSmoothingEnabled = false; vctx.imageSmoothingEnabled = false;

const state = {
  info: null, ws: null, scene: 0, upload: null, reference: null,  // reference: an Image shown under the paths
  paths: [], stroke: null, streaming: false, started: false,
  frames: [], firstFrameMs: null, serverFirstS: null, startMs: null, firstArrivalMs: null, version: null, pendingVersion: null,
};
window.demo = state;  // for the browser test and the curious

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function setButtons() {
  $("stop").disabled = !state.streaming;
  $("continue").disabled = state.streaming || !state.started;
  $("gif").disabled = $("mp4").disabled = state.frames.length === 0;
}

// ---------------------------------------------------------------- drawing the paths
function strokePaths(ctx, paths, color) {
  const w = ctx.canvas.width, h = ctx.canvas.height;
  ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.lineJoin = "round";
  for (const path of paths) {
    if (!path.length) continue;
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(path[0][0] * w, path[0][1] * h);
    for (const [x, y] of path.slice(1)) ctx.lineTo(x * w, y * h);
    ctx.stroke();
    ctx.fillStyle = "#f5c542";
    ctx.beginPath(); ctx.arc(path[0][0] * w, path[0][1] * h, 5, 0, 2 * Math.PI); ctx.fill();
    const [ex, ey] = path[path.length - 1];
    ctx.beginPath(); ctx.arc(ex * w, ey * h, 4, 0, 2 * Math.PI); ctx.stroke();
  }
}

function redrawReference() {
  dctx.fillStyle = "#000"; dctx.fillRect(0, 0, drawCanvas.width, drawCanvas.height);
  if (state.reference) dctx.drawImage(state.reference, 0, 0, drawCanvas.width, drawCanvas.height);
  const all = state.stroke ? state.paths.concat([state.stroke.points]) : state.paths;
  strokePaths(dctx, all, "rgba(255,255,255,0.9)");
}

function pointOf(ev) {
  const r = drawCanvas.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((ev.clientX - r.left) / r.width), clamp((ev.clientY - r.top) / r.height)];
}

drawCanvas.addEventListener("pointerdown", (ev) => {
  ev.preventDefault();
  drawCanvas.setPointerCapture(ev.pointerId);
  const p = pointOf(ev);
  // a stroke that begins near the end of a path extends it; any other stroke is a new path
  const near = state.paths.findIndex((path) => Math.hypot(path[path.length - 1][0] - p[0], path[path.length - 1][1] - p[1]) < 0.04);
  state.stroke = near >= 0 ? { extend: near, points: state.paths[near].slice() } : { extend: -1, points: [p] };
  if (near >= 0) state.paths.splice(near, 1);
  redrawReference();
});
drawCanvas.addEventListener("pointermove", (ev) => {
  if (!state.stroke) return;
  const p = pointOf(ev), last = state.stroke.points[state.stroke.points.length - 1];
  if (Math.hypot(p[0] - last[0], p[1] - last[1]) > 0.004) state.stroke.points.push(p);
  redrawReference();
});
function endStroke() {
  if (!state.stroke) return;
  const { extend, points } = state.stroke;
  state.stroke = null;
  if (extend >= 0) state.paths.splice(extend, 0, points); else state.paths.push(points);
  redrawReference();
  if (state.started) send({ type: "paths", paths: state.paths });  // the frames not yet generated follow it
}
drawCanvas.addEventListener("pointerup", endStroke);
drawCanvas.addEventListener("pointercancel", endStroke);

// ---------------------------------------------------------------- scenes and uploads
function showReference(src) {
  const img = new Image();
  img.onload = () => { state.reference = img; redrawReference(); };
  img.src = src;
}

function pickScene(i) {
  state.scene = i; state.upload = null;
  document.querySelectorAll("#scenes img").forEach((el, j) => el.classList.toggle("selected", j === i));
  $("prompt").value = state.info.scenes[i].caption;
  state.paths = [];
  showReference(state.info.scenes[i].image);
}

$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    state.upload = reader.result; state.scene = null; state.paths = [];
    document.querySelectorAll("#scenes img").forEach((el) => el.classList.remove("selected"));
    $("prompt").value = "";
    showReference(reader.result);
  };
  reader.readAsDataURL(file);
});

// ---------------------------------------------------------------- the WebSocket
function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

let chain = Promise.resolve();  // decode frames in arrival order
function onBinary(buf) {
  const view = new DataView(buf), n = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const blob = new Blob([new Uint8Array(buf, 4 + n)], { type: header.mime || "application/octet-stream" });
  if (header.type === "clip") {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = `drag-demo.${header.format}`;
    document.body.appendChild(a); a.click(); a.remove();
    setStatus(`downloaded ${header.frames} frames as ${header.format} (${header.bytes} bytes)`);
    return;
  }
  chain = chain.then(() => createImageBitmap(blob)).then((bitmap) => showFrame(header, bitmap));
}

function showFrame(header, bitmap) {
  const now = performance.now();
  if (state.firstArrivalMs === null) {
    state.firstArrivalMs = now;
    state.firstFrameMs = now - state.startMs;
    state.serverFirstS = header.latency_s;
  }
  state.frames.push(header);
  vctx.drawImage(bitmap, 0, 0, videoCanvas.width, videoCanvas.height);
  strokePaths(vctx, state.paths, "rgba(255,255,255,0.35)");
  const count = state.frames.length;
  const fps = count > 1 ? (count - 1) / ((now - state.firstArrivalMs) / 1000) : NaN;
  $("stats").textContent = `first frame: ${(state.firstFrameMs / 1000).toFixed(3)} s (server ${state.serverFirstS.toFixed(3)} s) | ` +
    `fps: ${isNaN(fps) ? "-" : fps.toFixed(1)} | frames: ${count} | control version: ${header.version}`;
  $("frame-info").textContent = `frame ${header.index} (latent ${header.latent_index}), made with control v${header.version}`;
  document.body.dataset.frames = String(count);
  document.body.dataset.version = String(header.version);
  setButtons();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") return onBinary(ev.data);
    const msg = JSON.parse(ev.data);
    if (msg.type === "ready") setStatus("ready: pick a scene, drag from a sprite, press Start");
    else if (msg.type === "wait") setStatus(`the demo is busy: you are number ${msg.position} in line`);
    else if (msg.type === "started") { state.streaming = true; state.started = true; setStatus(`generating (prompt: "${msg.prompt}")`); }
    else if (msg.type === "control") setStatus(`control v${msg.version} applies from frame ${msg.from_frame} on`);
    else if (msg.type === "done") {
      state.streaming = false;
      setStatus(`${msg.reason === "stopped" ? "stopped" : "paused"} after ${msg.frames} frames` +
        (msg.frames < msg.max_frames ? " (Continue goes on with the rolling KV window)" : " (the stream's frame limit)"));
    } else if (msg.type === "error") setStatus(`error: ${msg.message}`, true);
    setButtons();
  };
  ws.onclose = () => { state.streaming = false; setButtons(); setStatus("disconnected: reload the page", true); };
}

$("start").addEventListener("click", () => {
  if (!state.paths.length) return setStatus("draw at least one path from a sprite first", true);
  state.frames = []; state.firstArrivalMs = null; state.firstFrameMs = null; state.startMs = performance.now();
  const msg = { type: "start", paths: state.paths, prompt: $("prompt").value, seed: Number($("seed").value) || 0, pace: Number($("pace").value) };
  if (state.upload) msg.image = state.upload; else msg.scene = state.scene;
  send(msg);
});
$("stop").addEventListener("click", () => send({ type: "stop" }));
$("continue").addEventListener("click", () => { state.streaming = true; setButtons(); send({ type: "continue" }); });
$("clear").addEventListener("click", () => { state.paths = []; redrawReference(); });
$("undo").addEventListener("click", () => {
  state.paths.pop(); redrawReference();
  if (state.started && state.paths.length) send({ type: "paths", paths: state.paths });
});
$("gif").addEventListener("click", () => send({ type: "download", format: "gif" }));
$("mp4").addEventListener("click", () => send({ type: "download", format: "mp4" }));
$("pace").addEventListener("input", () => { $("pace-value").textContent = Number($("pace").value).toFixed(3) + " / frame"; });

fetch("/api/info").then((r) => r.json()).then((info) => {
  state.info = info;
  $("pace").value = info.pace; $("pace-value").textContent = info.pace.toFixed(3) + " / frame";
  info.scenes.forEach((s, i) => {
    const img = document.createElement("img");
    img.src = s.image; img.title = s.caption; img.addEventListener("click", () => pickScene(i));
    $("scenes").appendChild(img);
  });
  if (info.scenes.length) pickScene(0);
  connect();
});
setButtons();
