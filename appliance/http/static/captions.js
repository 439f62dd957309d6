// The room screen: follows /events/<session> (Server-Sent Events) and shows the last lines.
// Query options: size (font, % of screen height, >= 5), lines (1-6), partials (1/0),
// theme (dark/light), stall (seconds without any message before it says so and reconnects).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const number = (name, fallback, low, high) => {
    const value = Number.parseFloat(params.get(name));
    return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
  };
  const options = {
    size: number("size", 7, 5, 25),
    lines: Math.round(number("lines", 2, 1, 6)),
    partials: !["0", "false", "no", "off"].includes((params.get("partials") || "1").toLowerCase()),
    light: params.get("theme") === "light",
    stall: number("stall", 10, 2, 600),
  };
  const session = document.body.dataset.session;
  const captions = document.getElementById("captions");
  const notice = document.getElementById("notice");

  // Speaker colours: at least 7:1 against the background; never blue on black.
  const PALETTES = {
    dark: { bg: "#000000", text: "#ffffff",
            colours: ["#ffff00", "#00ffff", "#00ff00", "#ffffff", "#ffaaff", "#ffbb66"] },
    light: { bg: "#ffffff", text: "#000000",
             colours: ["#00006b", "#6b0000", "#003800", "#000000", "#4a004a", "#4d2600"] },
  };
  const palette = PALETTES[options.light ? "light" : "dark"];
  const rgb = (hex) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
  const luminance = (c) => {
    const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const css = (c) => `rgb(${c.map(Math.round).join(", ")})`;
  // Tentative words: the colour blended towards the background, as far as 7.5:1 allows.
  const dimmed = (hex) => {
    const colour = rgb(hex), bg = rgb(palette.bg);
    for (let alpha = 0.6; alpha < 1; alpha += 0.02) {
      const mix = colour.map((v, i) => alpha * v + (1 - alpha) * bg[i]);
      if (contrast(mix, bg) >= 7.5) return css(mix);
    }
    return css(colour);
  };
  // Speakers take colours in order of first appearance; words not yet attributed are plain.
  const plain = { full: css(rgb(palette.text)), dim: dimmed(palette.text) };
  const speakers = new Map(); // label -> {full, dim}
  const colourOf = (speaker) => {
    if (!speaker) return plain;
    if (!speakers.has(speaker)) {
      const hex = palette.colours[speakers.size % palette.colours.length];
      speakers.set(speaker, { full: css(rgb(hex)), dim: dimmed(hex) });
    }
    return speakers.get(speaker);
  };

  document.body.classList.toggle("light", options.light);
  document.documentElement.style.setProperty("--size", `${options.size}vh`);
  document.documentElement.style.setProperty("--lines", String(options.lines));

  // What the page has shown, for tests and debugging (window.roomScreen in the console).
  const stats = { finals: [], delays: [], connects: 0, resets: 0 };
  const state = {
    epoch: null, lastSeq: 0, backlogUntil: 0,
    finals: [], open: new Map(), // closed cues in order; open cues (PARTIAL) by cue id
    room: "starting", message: "", connected: false, lastMessage: Date.now(),
    audioSeconds: -1, audioSince: Date.now(),
  };

  const cueElement = (event, finalWords) => {
    const colour = colourOf(event.speaker);
    const line = document.createElement("p");
    line.className = "cue";
    line.dataset.cue = event.cue_id;
    line.style.color = colour.full;
    if (event.speaker) {
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = `${event.speaker}:`;
      line.append(name);
    }
    const words = event.words.length ? event.words : [{ text: event.text }];
    words.forEach((word, i) => {
      const span = document.createElement("span");
      const tentative = i >= finalWords;
      span.className = tentative ? "word tentative" : "word";
      if (tentative) span.style.color = colour.dim;
      span.textContent = `${i ? " " : ""}${word.text.trim()}`;
      line.append(span);
    });
    return line;
  };

  const render = () => {
    const shown = state.finals.slice(-2 * options.lines).map((e) => cueElement(e, e.words.length || 1));
    const open = [...state.open.values()].sort((a, b) => a.seq - b.seq);
    for (const e of open) shown.push(cueElement(e, e.final_words));
    captions.replaceChildren(...shown);
  };

  const showNotice = () => {
    let text = "";
    const quiet = (Date.now() - state.lastMessage) / 1000;
    if (!state.connected) text = "Connection to the captions lost: reconnecting…";
    else if (state.room === "unavailable") text = `Microphone unavailable${state.message ? `: ${state.message}` : ""}`;
    else if (state.room === "running" && quiet > options.stall) text = `No captions received for ${Math.round(quiet)} s`;
    else if (state.room === "running" && (Date.now() - state.audioSince) / 1000 > options.stall)
      text = `No audio from the room for ${Math.round((Date.now() - state.audioSince) / 1000)} s`;
    else if (state.room === "ended") text = "This session has ended";
    notice.textContent = text;
    notice.hidden = !text;
    notice.dataset.kind = text ? state.room : "";
  };

  const apply = (event) => {
    if (event.seq <= state.lastSeq) return; // already shown before a reconnect
    state.lastSeq = event.seq;
    if (event.kind === "partial") {
      state.open.set(event.cue_id, event);
    } else if (event.kind === "final") {
      state.open.delete(event.cue_id);
      state.finals.push(event);
      if (state.finals.length > 64) state.finals.shift();
      stats.finals.push({ epoch: state.epoch, seq: event.seq, cue_id: event.cue_id, text: event.text,
                          speaker: event.speaker });
    } else if (event.kind === "speaker_update") {
      const cue = state.finals.find((e) => e.cue_id === event.cue_id);
      if (cue) Object.assign(cue, { speaker: event.speaker, words: event.words });
    } else if (event.kind === "session_state") {
      state.room = event.state;
      state.message = event.message;
      showNotice();
    }
    render();
    // Creation (the daemon's wall clock) to text in the DOM, on this machine's wall clock.
    const delay = performance.timeOrigin + performance.now() - event.created * 1000;
    stats.delays.push({ seq: event.seq, kind: event.kind, ms: delay, backlog: event.seq <= state.backlogUntil });
    if (stats.delays.length > 10000) stats.delays.shift();
  };

  let source = null;
  let retryMs = 500;
  const connect = () => {
    const query = new URLSearchParams({ partials: options.partials ? "1" : "0" });
    if (state.lastSeq) {
      query.set("from_seq", String(state.lastSeq));
      query.set("epoch", state.epoch);
    }
    source = new EventSource(`/events/${encodeURIComponent(session)}?${query}`);
    source.addEventListener("hello", (message) => {
      const hello = JSON.parse(message.data);
      if (state.epoch !== null && (hello.reset || hello.epoch !== state.epoch)) {
        // Another log (the daemon restarted): its seqs start again; what was shown stays shown.
        state.lastSeq = 0;
        state.open.clear();
        stats.resets += 1;
      }
      state.epoch = hello.epoch;
      state.backlogUntil = hello.last_seq;
      state.room = hello.state;
      state.message = hello.message;
      state.connected = true;
      state.lastMessage = Date.now();
      stats.connects += 1;
      retryMs = 500;
      render();
      showNotice();
    });
    source.addEventListener("heartbeat", (message) => {
      const beat = JSON.parse(message.data);
      state.lastMessage = Date.now();
      if (beat.audio_seconds !== state.audioSeconds) {
        state.audioSeconds = beat.audio_seconds;
        state.audioSince = Date.now();
      }
      state.room = beat.state;
    });
    source.onmessage = (message) => {
      state.lastMessage = Date.now();
      state.audioSince = Date.now();
      apply(JSON.parse(message.data));
    };
    // Our own reconnect (not EventSource's) so the epoch and seq of this page go with it.
    source.onerror = () => reconnect(retryMs);
  };
  const reconnect = (after = 0) => {
    if (source) source.close();
    source = null;
    state.connected = false;
    showNotice();
    retryMs = Math.min(2 * retryMs, 4000);
    setTimeout(connect, after);
  };

  setInterval(() => {
    if (state.connected && state.room === "running" && (Date.now() - state.lastMessage) / 1000 > options.stall) {
      showNotice();
      reconnect(); // a stream that says nothing, not even heartbeats, is a dead one
    } else {
      showNotice();
    }
  }, 1000);

  window.roomScreen = { options, stats, state, reconnect: () => reconnect(0), colourOf };
  connect();
})();
