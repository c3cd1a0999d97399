// chronoscope's page: plain JS over the /v1 API, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const BUSY = new Set(["queued", "processing"]);
// Signed media URLs live 15 minutes (CHRONOSCOPE_API__MEDIA_URL_TTL_S); renew well before.
const URL_FRESH_MS = 10 * 60 * 1000;
const EMPTY_HINT = "Nothing to search yet.";
const STAGES = { decode: "decoding", speech: "transcribing speech", text: "reading on-screen text",
                 visual: "visual search", captions: "describing scenes",
                 finalize: "writing chapters" };
const NO_VIDEO = "Chapters show here when a video is open.";
const state = {
  videos: new Map(), polling: null, uploaded: null,
  current: null,          // {id, filename, src, fetchedAt, hasPreview}
  renewing: false,        // one renewal per failure: a second failure is the format's
  // blob: URLs, revoked when what shows them goes: the open video's, the results'
  blobs: { video: [], results: [] },
};

// ---- errors: shown until what caused them no longer holds ---------------------------------

const errors = new Map();    // source -> message

function fail(source, error) {
  const message = error instanceof Error ? error.message : String(error);
  errors.set(error.status === 401 ? "key" : source, message);
  showErrors();
}

function clearError(...sources) {
  if (sources.map((s) => errors.delete(s)).some(Boolean)) showErrors();
}

function showErrors() {
  const box = $("#errors");
  box.replaceChildren(...[...errors.values()].map((m) => el("p", { textContent: m })));
  box.hidden = errors.size === 0;
}

// ---- API -----------------------------------------------------------------------------------

function key() { return $("#key").value.trim(); }

class ApiError extends Error {
  constructor(status, message) { super(`${status}: ${message}`); this.status = status; }
}

// The message of the API's one error body, {"error": {"code", "message"}}.
function errorMessage(body, fallback) {
  return (body && body.error && body.error.message) || fallback;
}

async function api(path, options = {}) {
  const r = await fetch(path, {
    ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${key()}` },
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    const message = errorMessage(body, r.statusText);
    throw new ApiError(r.status, r.status === 401 ? `the API key was refused (${message})` : message);
  }
  clearError("key");     // the key works now, whatever an earlier request said
  return r.status === 204 ? null : r;
}

async function apiJson(path, options) { return (await api(path, options))?.json() ?? null; }

// Every item of a paginated list ({<field>: [...], next_page_token}).
async function allPages(path, field, limit, maxPages = 50) {
  const items = [];
  let token = null;
  for (let page = 0; page < maxPages; page += 1) {
    const sep = path.includes("?") ? "&" : "?";
    const body = await apiJson(`${path}${sep}limit=${limit}` +
                               (token ? `&page_token=${encodeURIComponent(token)}` : ""));
    items.push(...body[field]);
    token = body.next_page_token;
    if (!token) break;
  }
  return items;
}

// A keyed GET as a blob: URL (an <img> or <track> cannot send the key), kept in a bucket.
async function blobUrl(path, bucket) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  state.blobs[bucket].push(url);
  return url;
}

function revokeBlobs(bucket) {
  for (const url of state.blobs[bucket].splice(0)) URL.revokeObjectURL(url);
}

const videoPath = (id, rest = "") => `/v1/videos/${encodeURIComponent(id)}${rest}`;

// ---- time and DOM --------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, seconds || 0);
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

function say(text) { $("#status").textContent = text; }

function empty(selector, text) {
  const note = $(selector);
  note.textContent = text || "";
  note.hidden = !text;
}

// A clickable row (mouse or Enter) that seeks the player.
function seeker(item, videoId, seconds) {
  const go = () => play(videoId, seconds);
  item.tabIndex = 0;
  item.addEventListener("click", go);
  item.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  item.dataset.video = videoId;
  item.dataset.start = seconds;
}

function thumbnail(url, bucket) {
  const img = el("img", { className: "thumb", alt: "", width: 160, height: 90 });
  img.dataset.src = url;
  blobUrl(url, bucket).then((src) => { img.src = src; }).catch(() => img.remove());
  return img;
}

// ---- search --------------------------------------------------------------------------------

function searchParams(like) {
  const params = new URLSearchParams({ k: $("#f-k").value || "10" });
  if (like) params.set("like", like); else params.set("q", $("#q").value);
  const start = parseClock($("#f-start").value), end = parseClock($("#f-end").value);
  if (start !== null) params.set("start", start);
  if (end !== null) params.set("end", end);
  if ($("#f-video").value) params.append("video", $("#f-video").value);
  document.querySelectorAll('input[name="kind"]:checked')
    .forEach((box) => params.append("kind", box.value));
  return params;
}

async function search(event, like = null) {
  if (event) event.preventDefault();
  let params;
  try { params = searchParams(like); } catch (e) { fail("search", e); return; }
  say("Searching…");
  try {
    const body = await apiJson(`/v1/search?${params}`);
    clearError("search");
    showMoments(body.moments);
    const shown = $("#results").children.length;
    say(shown ? `${shown} moment${shown > 1 ? "s" : ""}`
      : "No moments matched. Try other words, fewer filters, or upload more video.");
  } catch (e) { say(""); fail("search", e); }
}

function showMoments(moments) {
  const list = $("#results");
  list.replaceChildren();
  revokeBlobs("results");
  for (const m of moments) {
    const name = state.videos.get(m.video_id)?.filename || m.filename || m.video_id.slice(0, 8);
    const more = el("button", { type: "button", className: "more quiet",
                                textContent: "More like this",
                                title: "moments that look like this one" });
    more.addEventListener("click", (e) => {
      e.stopPropagation();
      search(null, `${m.video_id}@${((m.start + m.end) / 2).toFixed(3)}`);
    });
    const save = el("button", { type: "button", className: "save quiet", textContent: "Save clip",
                                title: "download this moment as an MP4" });
    save.addEventListener("click", (e) => {
      e.stopPropagation();
      saveClip(m, name);
    });
    const item = el("li", { className: "moment" + (m.weak ? " weak" : "") },
      el("div", { className: "body" },
        el("div", { className: "meta" },
          el("span", { className: "when", textContent: `${clock(m.start)}–${clock(m.end)}` }),
          el("span", { className: "file", textContent: name }),
          el("span", { className: "kinds", textContent: m.kinds.join(" · ") }),
          el("span", { className: "score", title: "relevance, 0 to 1",
                       textContent: m.score.toFixed(2) + (m.weak ? " weak" : "") })),
        el("p", { className: "text", textContent: m.text }),
        el("div", { className: "actions" }, more, save)));
    if (m.thumbnail) item.prepend(thumbnail(m.thumbnail, "results"));
    seeker(item, m.video_id, m.start);
    item.dataset.end = m.end;
    list.append(item);
  }
}

// The moment as an MP4 file, fetched with the key and saved through a download link.
async function saveClip(m, name) {
  const range = `start=${m.start}&end=${m.end}`;
  try {
    const blob = await (await api(videoPath(m.video_id, `/clip?${range}`))).blob();
    const stem = name.replace(/\.[^.]*$/, "");
    const link = el("a", { href: URL.createObjectURL(blob),
                           download: `${stem}_${m.start.toFixed(1)}-${m.end.toFixed(1)}s.mp4` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    clearError("clip");
  } catch (e) { fail("clip", e); }
}

// ---- player: signed URLs renewed, a preview where the original cannot play ------------------

function mediaSrc(video) { return video.playback_url || video.media_url; }

async function fetchVideo(videoId) {
  const video = await apiJson(videoPath(videoId));
  return { id: video.id, filename: video.filename, src: mediaSrc(video), fetchedAt: Date.now(),
           hasPreview: Boolean(video.playback_url) && video.playback_url !== video.media_url,
           status: video.status };
}

// Seek once the player knows the media; a seek before that is lost.
function seek(seconds) {
  const player = $("#player");
  const go = () => { player.currentTime = seconds; player.play().catch(() => {}); };
  if (player.readyState >= 1) go();
  else player.addEventListener("loadedmetadata", go, { once: true });
}

function showInPlayer(current, seconds) {
  const player = $("#player");
  state.current = current;
  player.src = current.src;
  seek(seconds);
}

async function play(videoId, seconds) {
  try {
    const current = state.current;
    if (!current || current.id !== videoId) {
      await openVideo(videoId, seconds);
    } else if (Date.now() - current.fetchedAt > URL_FRESH_MS) {
      showInPlayer(await fetchVideo(videoId), seconds);     // the old URL has run out
    } else {
      seek(seconds);
    }
    clearError("play");
  } catch (e) { fail("play", e); }
  bringPlayerIntoView();
}

async function openVideo(videoId, seconds) {
  const current = await fetchVideo(videoId);
  revokeBlobs("video");
  state.renewing = false;
  clearError("player", "captions", "chapters", "transcript");
  $("#playback-note").hidden = true;
  $("#now-playing").textContent = current.filename;
  $("#player").replaceChildren();
  showInPlayer(current, seconds);
  loadCaptions(videoId);
  loadChapters(videoId);
  loadTranscript(videoId);
}

// On a phone the player sits below the results: bring it up when a moment is picked.
function bringPlayerIntoView() {
  const box = $("#player").getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) {
    $("#player").scrollIntoView({ block: "start", behavior: "smooth" });
  }
}

// A failed load is first taken for an expired URL (403) and renewed once; failing again,
// the browser cannot play the file, and the page says so.
async function playerFailed() {
  const player = $("#player"), current = state.current;
  if (!current || !player.error) return;
  const at = player.currentTime;
  if (!state.renewing) {
    state.renewing = true;
    try { showInPlayer(await fetchVideo(current.id), at); } catch (e) { fail("player", e); }
    return;
  }
  const why = current.hasPreview ? "its browser-playable preview failed to load"
    : current.status === "ready" ? "its format does not play in browsers and it has no preview"
      : "its browser-playable preview is made when indexing finishes";
  const note = $("#playback-note");
  note.textContent = `Cannot play ${current.filename} here (${why}). Search, chapters and ` +
    "transcript still work.";
  note.hidden = false;
}

function playerPlaying() {
  state.renewing = false;
  $("#playback-note").hidden = true;
  clearError("player");
}

async function loadCaptions(videoId) {
  try {
    const src = await blobUrl(videoPath(videoId, "/captions.vtt?kind=speech"), "video");
    if (state.current?.id !== videoId) return;
    $("#player").append(el("track", { kind: "captions", label: "Captions", srclang: "en",
                                      src, default: true }));
    clearError("captions");
  } catch (e) { fail("captions", e); }
}

function unloadPlayer() {
  const player = $("#player");
  player.pause();
  player.removeAttribute("src");
  player.replaceChildren();
  player.load();
  state.current = null;
  $("#now-playing").textContent = "Pick a moment to play it";
  $("#playback-note").hidden = true;
  $("#chapters").replaceChildren();
  $("#summary").textContent = NO_VIDEO;
  $("#transcript").replaceChildren();
  empty("#transcript-empty", "Play a video to read along; every line jumps the player to its time.");
  revokeBlobs("video");
  clearError("player", "play", "captions", "chapters", "transcript");
}

// ---- chapters and transcript ---------------------------------------------------------------

async function loadChapters(videoId) {
  const list = $("#chapters");
  list.replaceChildren();
  $("#summary").textContent = "";
  try {
    const data = await apiJson(videoPath(videoId, "/summary"));
    if (state.current?.id !== videoId) return;
    for (const c of data.chapters) {
      const item = el("li", { className: "chapter" },
        el("span", { className: "when", textContent: clock(c.start) }),
        el("span", { className: "title", textContent: c.title }));
      if (c.thumbnail) {
        item.prepend(thumbnail(c.thumbnail, "video"));
        item.classList.add("with-thumb");
      }
      seeker(item, videoId, c.start);
      item.dataset.end = c.end;
      list.append(item);
    }
    $("#summary").textContent = data.summary || (data.chapters.length ? ""
      : "No chapters yet: they are written when indexing finishes.");
    clearError("chapters");
  } catch (e) { fail("chapters", e); }
}

async function loadTranscript(videoId) {
  const list = $("#transcript");
  list.replaceChildren();
  empty("#transcript-empty", "Loading the transcript…");
  const kind = $("#t-kind").value;
  try {
    const path = videoPath(videoId, "/segments") + (kind ? `?kind=${kind}` : "");
    const segments = (await allPages(path, "segments", 500)).filter((s) => s.text.trim());
    if (state.current?.id !== videoId) return;
    for (const s of segments) {
      const item = el("li", { className: `line ${s.kind}` },
        el("span", { className: "when", textContent: clock(s.start) }),
        el("span", { className: "text", textContent: s.text }));
      item.title = s.kind.replace("_", " ");
      seeker(item, videoId, s.start);
      item.dataset.end = s.end;
      list.append(item);
    }
    const status = state.videos.get(videoId)?.status;
    empty("#transcript-empty", segments.length ? "" : `No ${kind ? "such " : ""}segments ` +
      (status === "ready" ? "in this video: nothing was heard or read." : "yet: indexing goes on."));
    clearError("transcript");
  } catch (e) { empty("#transcript-empty", ""); fail("transcript", e); }
}

// The chapter and transcript lines under the playhead.
function markNow() {
  const t = $("#player").currentTime;
  document.querySelectorAll("#chapters .chapter, #transcript .line").forEach((c) => {
    c.classList.toggle("now", t >= Number(c.dataset.start) && t < Number(c.dataset.end));
  });
}

// ---- library -------------------------------------------------------------------------------

// Live progress in seconds of video, with the stage and what is left.
function progressText(v) {
  const duration = v.duration || 0;
  const done = v.progress_s ?? (duration * (v.progress || 0)) / 100;
  const parts = [`indexed ${clock(done)} of ${clock(duration)}`];
  if (v.stage) parts.push(STAGES[v.stage] || v.stage);
  if (v.eta_s != null) parts.push(`~${clock(v.eta_s)} left`);
  return { text: parts.join(" · "), done, duration };
}

function doneOf(v) {
  const { done, duration } = progressText(v);
  return `${clock(done)} of ${clock(duration)}`;
}

function videoDetail(v) {
  if (v.status === "queued") return "queued";
  if (v.status === "processing") return progressText(v).text;
  if (v.status === "interrupted") {
    return `interrupted at ${doneOf(v)}: run chronoscope resume to finish it`;
  }
  if (v.status === "failed") return `failed: ${v.error}`;
  return clock(v.duration);
}

function videoItem(v) {
  const name = el("button", { type: "button", className: "name", textContent: v.filename,
                              title: "play" });
  name.addEventListener("click", () => play(v.id, 0));
  name.disabled = v.status === "failed";
  const remove = el("button", { type: "button", className: "delete quiet", textContent: "Delete",
                                title: `delete ${v.filename} and its index` });
  remove.addEventListener("click", () => deleteVideo(v));
  const item = el("li", { className: `video ${v.status}` }, name,
    el("span", { className: "detail", textContent: videoDetail(v) }), remove);
  if (BUSY.has(v.status) || v.status === "interrupted") {
    const { done, duration } = progressText(v);
    item.append(el("progress", { className: "indexing", max: duration || 1,
                                 value: v.status === "queued" ? 0 : done }));
  }
  item.dataset.id = v.id;
  item.dataset.status = v.status;
  return item;
}

async function refreshVideos() {
  clearTimeout(state.polling);
  if (!key()) {
    empty("#library-empty", "Enter your API key above to see your library.");
    return;
  }
  let videos;
  try { videos = await allPages("/v1/videos", "videos", 100); } catch (e) {
    fail("library", e);
    empty("#library-empty", "");
    return;
  }
  clearError("library");
  state.videos = new Map(videos.map((v) => [v.id, v]));
  $("#videos").replaceChildren(...videos.map(videoItem));
  empty("#library-empty", videos.length ? "" : "No videos yet: upload one to make it searchable.");
  const hint = $("#status").textContent === EMPTY_HINT;
  if (!videos.length && !$("#results").children.length) say(EMPTY_HINT);
  else if (videos.length && hint) say("");
  const pick = $("#f-video"), chosen = pick.value;
  pick.replaceChildren(el("option", { value: "", textContent: "all videos" }),
    ...videos.map((v) => el("option", { value: v.id, textContent: v.filename })));
  pick.value = state.videos.has(chosen) ? chosen : "";
  noteUploadOutcome();
  pollAgain(videos);
}

const notDone = (v) => BUSY.has(v.status) || v.status === "interrupted";

// Poll while anything is being indexed (an interrupted run may be resumed elsewhere): only
// the videos not done yet, in one small request whatever the size of the library, each
// updated in place; the whole list again once one is done or another has appeared.
function pollAgain(videos) {
  const busy = videos.some((v) => BUSY.has(v.status));
  if (busy || videos.some(notDone)) state.polling = setTimeout(pollActive, busy ? 1000 : 10000);
}

async function pollActive() {
  clearTimeout(state.polling);
  let active;
  try { active = await allPages("/v1/videos?active=true", "videos", 100); } catch (e) {
    refreshVideos();          // which says what went wrong
    return;
  }
  const known = [...state.videos.values()].filter(notDone);
  if (active.length !== known.length || !active.every((v) => state.videos.has(v.id))) {
    refreshVideos();
    return;
  }
  for (const v of active) {
    state.videos.set(v.id, v);
    $(`#videos [data-id="${CSS.escape(v.id)}"]`)?.replaceWith(videoItem(v));
  }
  pollAgain(active);
}

function noteUploadOutcome() {
  const note = $("#upload-status");
  if (note.dataset.video && !state.videos.has(note.dataset.video)) {    // deleted since
    note.textContent = "";
    delete note.dataset.video;
  }
  const v = state.uploaded && state.videos.get(state.uploaded);
  if (!v || BUSY.has(v.status)) return;
  note.dataset.video = v.id;
  note.className = v.status === "ready" ? "" : "error";
  note.textContent = v.status === "ready" ? "uploaded and indexed"
    : v.status === "failed" ? `indexing failed: ${v.error}`
      : "indexing was interrupted: run chronoscope resume to finish it";
  state.uploaded = null;
}

async function deleteVideo(v) {
  if (!window.confirm(`Delete ${v.filename}? Its index, captions and file go too.`)) return;
  try {
    await api(videoPath(v.id), { method: "DELETE" });
    clearError("delete");
    if (state.current?.id === v.id) unloadPlayer();
    document.querySelectorAll(`#results .moment`).forEach((m) => {
      if (m.dataset.video === v.id) m.remove();
    });
  } catch (e) { fail("delete", e); }
  refreshVideos();
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
      note.textContent = `upload failed: ${errorMessage(body, xhr.statusText)}`;
      note.className = "error";
      return;
    }
    note.className = "";
    note.textContent = xhr.status === 200 ? `already in the library (${body.status})`
      : "uploaded; indexing…";
    note.dataset.video = body.id || "";
    if (xhr.status === 202) state.uploaded = body.id;
    $("#upload-form").reset();
    refreshVideos();
  };
  xhr.onerror = () => {
    bar.hidden = true;
    note.textContent = "upload failed: network error";
    note.className = "error";
  };
  bar.hidden = false;
  bar.value = 0;
  note.className = "";
  note.textContent = `uploading ${file.name}…`;
  delete note.dataset.video;
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
  $("#t-kind").addEventListener("change", () => {
    if (state.current) loadTranscript(state.current.id);
  });
  const player = $("#player");
  player.addEventListener("timeupdate", markNow);
  player.addEventListener("error", playerFailed);
  player.addEventListener("playing", playerPlaying);
  refreshVideos();
});
