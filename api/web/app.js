// chronoscope's page: plain JS over the /v1 API, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { videos: new Map(), current: null, polling: null };

// ---- API -----------------------------------------------------------------------------------

function key() { return $("#key").value.trim(); }

async function api(path, options = {}) {
  const r = await fetch(path, {
    ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${key()}` },
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(`${r.status}: ${(body.error && body.error.message) || r.statusText}`);
  }
  return r.status === 204 ? null : r.json();
}

// ---- time ----------------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(sec).padStart(2, "0")}`;
}

// "90", "1:30" or "1:02:03" to seconds; empty is null; anything else throws.
function parseClock(text) {
  const t = text.trim();
  if (!t) return null;
  if (!/^\d+(\.\d+)?$|^\d+(:\d{1,2}){1,2}(\.\d+)?$/.test(t)) throw new Error(`bad time "${t}"`);
  return t.split(":").reduce((acc, part) => acc * 60 + Number(part), 0);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
}

function say(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

// ---- search --------------------------------------------------------------------------------

async function search(event, like = null) {
  if (event) event.preventDefault();
  const params = new URLSearchParams({ k: $("#f-k").value || "10" });
  if (like) params.set("like", like); else params.set("q", $("#q").value);
  try {
    const start = parseClock($("#f-start").value), end = parseClock($("#f-end").value);
    if (start !== null) params.set("start", start);
    if (end !== null) params.set("end", end);
  } catch (e) { say(e.message, true); return; }
  if ($("#f-video").value) params.append("video", $("#f-video").value);
  document.querySelectorAll('input[name="kind"]:checked')
    .forEach((box) => params.append("kind", box.value));
  say("Searching…");
  try {
    const { moments } = await api(`/v1/search?${params}`);
    showMoments(moments);
    say(moments.length ? `${moments.length} moment${moments.length > 1 ? "s" : ""}` : "No matches");
  } catch (e) { say(e.message, true); }
}

function showMoments(moments) {
  const list = $("#results");
  list.replaceChildren();
  for (const m of moments) {
    const item = el("li", { className: "moment" + (m.weak ? " weak" : ""), tabIndex: 0 },
      el("span", { className: "when", textContent: `${clock(m.start)}–${clock(m.end)}` }),
      el("span", { className: "file", textContent: m.filename || m.video_id.slice(0, 8) }),
      el("span", { className: "kinds", textContent: m.kinds.join(" · ") }),
      el("span", { className: "score", textContent: m.score.toFixed(2) + (m.weak ? " weak" : ""),
                   title: "relevance, 0 to 1" }),
      el("p", { className: "text", textContent: m.text }));
    if (m.thumbnail) item.prepend(thumbnail(m.thumbnail));
    const more = el("button", { type: "button", className: "more", textContent: "More like this",
                                title: "moments that look like this one" });
    more.addEventListener("click", (e) => {
      e.stopPropagation();
      search(null, `${m.video_id}@${((m.start + m.end) / 2).toFixed(3)}`);
    });
    item.append(more);
    item.dataset.video = m.video_id;
    item.dataset.start = m.start;
    const go = () => play(m.video_id, m.start);
    item.addEventListener("click", go);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    list.append(item);
  }
}

// A keyframe's JPEG: fetched with the key (an <img> cannot send it), shown from a blob URL.
function thumbnail(url) {
  const img = el("img", { className: "thumb", alt: "", width: 160 });
  fetch(url, { headers: { Authorization: `Bearer ${key()}` } })
    .then((r) => (r.ok ? r.blob() : null))
    .then((blob) => { if (blob) img.src = URL.createObjectURL(blob); })
    .catch(() => {});
  return img;
}

// ---- player and chapters -------------------------------------------------------------------

// Seek once the player knows the media; a seek before that is lost.
function seek(player, seconds) {
  const go = () => { player.currentTime = seconds; player.play().catch(() => {}); };
  if (player.readyState >= 1) go();
  else player.addEventListener("loadedmetadata", go, { once: true });
}

async function play(videoId, seconds) {
  const player = $("#player");
  try {
    if (state.current !== videoId) {
      const video = await api(`/v1/videos/${encodeURIComponent(videoId)}`);
      state.current = videoId;
      $("#now-playing").textContent = video.filename;
      player.src = video.media_url;     // a signed URL: <video> cannot send the key
      loadChapters(videoId);
    }
    seek(player, seconds);
  } catch (e) { say(e.message, true); }
}

async function loadChapters(videoId) {
  const list = $("#chapters");
  list.replaceChildren();
  $("#summary").textContent = "";
  try {
    const data = await api(`/v1/videos/${encodeURIComponent(videoId)}/summary`);
    for (const c of data.chapters) {
      const item = el("li", { className: "chapter", tabIndex: 0 },
        el("span", { className: "when", textContent: clock(c.start) }),
        el("span", { className: "title", textContent: c.title }));
      item.dataset.start = c.start;
      item.dataset.end = c.end;
      item.addEventListener("click", () => seek($("#player"), c.start));
      list.append(item);
    }
    $("#summary").textContent = data.summary || "";
  } catch (e) { say(e.message, true); }
}

function markChapter() {
  const t = $("#player").currentTime;
  document.querySelectorAll("#chapters .chapter").forEach((c) => {
    c.classList.toggle("now", t >= Number(c.dataset.start) && t < Number(c.dataset.end));
  });
}

// ---- library and upload --------------------------------------------------------------------

async function refreshVideos() {
  if (!key()) return;
  let videos;
  try { videos = (await api("/v1/videos?limit=1000")).videos; } catch (e) { say(e.message, true); return; }
  state.videos = new Map(videos.map((v) => [v.id, v]));
  const list = $("#videos"), pick = $("#f-video"), chosen = pick.value;
  list.replaceChildren();
  pick.replaceChildren(el("option", { value: "", textContent: "all videos" }));
  for (const v of videos) {
    const busy = v.status === "queued" || v.status === "processing";
    const detail = busy ? `${v.status} ${v.progress}%${v.eta_s != null ? `, ~${clock(v.eta_s)} left` : ""}`
      : v.status === "failed" ? `failed: ${v.error}` : `${clock(v.duration || 0)}`;
    const item = el("li", { className: `video ${v.status}` },
      el("span", { className: "name", textContent: v.filename }),
      el("span", { className: "detail", textContent: detail }));
    item.dataset.id = v.id;
    if (v.status === "ready") item.addEventListener("click", () => play(v.id, 0));
    list.append(item);
    pick.append(el("option", { value: v.id, textContent: v.filename }));
  }
  pick.value = state.videos.has(chosen) ? chosen : "";
  // Poll while anything is still being indexed.
  const busy = videos.some((v) => v.status === "queued" || v.status === "processing");
  const note = $("#upload-status");
  if (!busy && note.dataset.indexing) {
    note.textContent = "uploaded and indexed";
    delete note.dataset.indexing;
  }
  clearTimeout(state.polling);
  if (busy) state.polling = setTimeout(refreshVideos, 2000);
}

function upload(event) {
  event.preventDefault();
  const file = $("#upload-file").files[0];
  if (!file) return;
  const bar = $("#upload-progress"), note = $("#upload-status");
  const form = new FormData();
  form.append("file", file);
  // XMLHttpRequest, not fetch: only it reports upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/videos");
  xhr.setRequestHeader("Authorization", `Bearer ${key()}`);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
  };
  xhr.onload = () => {
    bar.hidden = true;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status >= 300) {
      note.textContent = `upload failed: ${(body.error && body.error.message) || xhr.statusText}`;
      note.className = "error";
      return;
    }
    note.className = "";
    note.textContent = xhr.status === 200 ? `already in the library (${body.status})`
      : "uploaded; indexing…";
    if (xhr.status === 202) note.dataset.indexing = "1";
    $("#upload-form").reset();
    refreshVideos();
  };
  xhr.onerror = () => { bar.hidden = true; note.textContent = "upload failed: network error"; };
  bar.hidden = false;
  bar.value = 0;
  note.textContent = `uploading ${file.name}…`;
  xhr.send(form);
}

// ---- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = $("#key");
  keyInput.value = localStorage.getItem("chronoscope.key") || "";
  keyInput.addEventListener("change", () => {
    localStorage.setItem("chronoscope.key", key());
    refreshVideos();
  });
  $("#search-form").addEventListener("submit", search);
  $("#upload-form").addEventListener("submit", upload);
  $("#player").addEventListener("timeupdate", markChapter);
  refreshVideos();
});
