// The voicecalm demo page: one WebRTC call to the voice pipeline (POST /api/offer), the call's
// transcript, bot text, flow and slots from the data channel, and a text box on the REST
// channel that continues the same conversation (same sender id).
"use strict";

const ICE_GATHERING_CAP_MS = 2000;
const STATS_PERIOD_MS = 1000;
const NO_FLOW = "none";

const $ = (id) => document.getElementById(id);
const pageSenderId = "web-" + Math.random().toString(36).slice(2, 10);

let peer = null;
let channel = null;
let pcId = null;
let statsTimer = null;

const senderId = () => pcId || pageSenderId;

function addLine(kind, text, extraClass) {
  const item = document.createElement("li");
  item.className = extraClass ? `${kind} ${extraClass}` : kind;
  item.textContent = text;
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function tableRow(...texts) {
  const row = document.createElement("tr");
  for (const text of texts) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  return row;
}

function showState(state) {
  $("flow").textContent = state.flow || NO_FLOW;
  $("stack").textContent = state.stack.length ? "stack: " + state.stack.join(" › ") : "";
  const slots = Object.entries(state.slots);
  const rows = slots.length
    ? slots.map(([name, value]) => tableRow(name, typeof value === "string" ? value : JSON.stringify(value)))
    : [tableRow("none set yet")];
  $("slots").tBodies[0].replaceChildren(...rows);
}

function onServerMessage(event) {
  const message = JSON.parse(event.data);
  switch (message.type) {
    case "transcript": addLine("user", message.text); break;
    case "bot_text": addLine("bot", message.text); break;
    case "state": showState(message); break;
    case "signalling":
      if (message.message && message.message.type === "peerLeft") hangUp("the assistant ended the call");
      break;
  }
}

function iceGatheringComplete(connection) {
  if (connection.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      connection.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (connection.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, ICE_GATHERING_CAP_MS);
    connection.addEventListener("icegatheringstatechange", check);
  });
}

async function readStats() {
  if (!peer) return;
  const report = await peer.getStats();
  report.forEach((stat) => {
    if (stat.type === "inbound-rtp" && stat.kind === "audio" && stat.totalAudioEnergy !== undefined) {
      $("audio-energy").dataset.energy = String(stat.totalAudioEnergy);
      $("audio-energy").textContent = `${stat.packetsReceived} packets, energy ${stat.totalAudioEnergy.toFixed(4)}`;
    }
  });
}

async function call() {
  setStatus("connecting", "connecting…");
  $("call").disabled = true;
  try {
    const microphone = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    peer = new RTCPeerConnection();
    channel = peer.createDataChannel("voicecalm", { ordered: true });
    channel.addEventListener("message", onServerMessage);
    peer.addTransceiver(microphone.getAudioTracks()[0], { direction: "sendrecv", streams: [microphone] });
    peer.addEventListener("track", (event) => {
      $("bot-audio").srcObject = event.streams[0] || new MediaStream([event.track]);
      $("bot-audio").play().catch(() => {});  // autoplay may wait for a click
    });
    peer.addEventListener("connectionstatechange", () => {
      const state = peer ? peer.connectionState : "closed";
      if (state === "connected") setStatus("connected", "connected: speak");
      else if (state === "failed") hangUp("the connection failed");
    });

    await peer.setLocalDescription(await peer.createOffer());
    await iceGatheringComplete(peer);
    const response = await fetch("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: peer.localDescription.sdp, type: peer.localDescription.type }),
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const answer = await response.json();
    pcId = answer.pc_id;
    $("sender").textContent = senderId();
    await peer.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    statsTimer = setInterval(readStats, STATS_PERIOD_MS);
    $("call").textContent = "Hang up";
    $("call").classList.add("hang-up");
  } catch (error) {
    hangUp(`could not start the call: ${error.message}`);
  } finally {
    $("call").disabled = false;
  }
}

function hangUp(reason) {
  clearInterval(statsTimer);
  if (peer) {
    peer.getSenders().forEach((sender) => sender.track && sender.track.stop());
    peer.close();
  }
  peer = null;
  channel = null;
  pcId = null;
  $("sender").textContent = senderId();
  $("call").textContent = "Start talking";
  $("call").classList.remove("hang-up");
  setStatus(reason ? "failed" : "idle", reason || "not connected");
}

async function sendTyped(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("message").value = "";
  addLine("user", text, "typed");
  const sender = senderId();
  try {
    const response = await fetch("/webhooks/rest/webhook", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sender, message: text }),
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    for (const message of await response.json()) {
      if (message.text) addLine("bot", message.text, "typed");
    }
    showState(await (await fetch(`/api/state/${encodeURIComponent(sender)}`)).json());
  } catch (error) {
    addLine("bot", `message not delivered: ${error.message}`, "error");
  }
}

function pressKey(digit) {
  if (!channel || channel.readyState !== "open") return;
  channel.send(JSON.stringify({ type: "dtmf", digit }));
  const last = $("log").lastElementChild;
  if (last && last.classList.contains("keys")) last.textContent += digit;
  else addLine("user", digit, "keys");
}

for (const digit of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
  const key = document.createElement("button");
  key.type = "button";
  key.textContent = digit;
  key.addEventListener("click", () => pressKey(digit));
  $("keypad").append(key);
}
$("call").addEventListener("click", () => (peer ? hangUp() : call()));
$("typed").addEventListener("submit", sendTyped);
$("sender").textContent = senderId();
