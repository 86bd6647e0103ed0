// The roomcast console: a front end written against socket.io-client v4, as the CRM's is, talking to the local
// stack with the connection options of docs/socketio.md only. Plain DOM code, no build step (docs/console.md).
"use strict";

const ACK_TIMEOUT_MS = 10000;
const TYPING_EVERY_MS = 2000; // how often a typist repeats `isTyping: true`
const TYPING_SHOWN_MS = 5000; // how long another's typing shows without a repeat
const HISTORY_PAGE = 30;

const $ = (selector) => document.querySelector(selector);

const state = {
  me: null, // {userId, companyId, lifetime}
  sockets: null, // {conversations, notifications, analytics}
  conversations: new Map(), // id -> conversation, as last heard
  openId: null,
  loaded: false, // the open conversation's newest page has arrived
  messages: new Map(), // seq -> message of the open conversation
  lastSeq: 0, // the highest seq of the open conversation seen without a gap before it
  olderCursor: null, // `before` for the previous page, null when history is complete
  typists: new Map(), // userId -> timer hiding their indicator
  online: new Set(),
  lastDigest: null, // {online, offline}: the last presence:changed heard, in a large company
  notifications: new Map(), // id -> notification, newest first
  unread: 0,
  notificationsCursor: null,
  period: "today",
  typingSentAt: 0,
  heardSinceLost: 0, // messages heard since the connection was lost: a recovery replays them before `connect`
};

class ServerError extends Error {
  constructor(code, message, action) {
    super(message);
    this.code = code;
    this.action = action;
  }
}

// ---- what the user sees of failures and of the connection ----

function showError(error, action) {
  const item = document.createElement("p");
  item.className = "error";
  const code = error instanceof ServerError ? error.code : "client";
  item.dataset.code = code;
  item.textContent = `${action || error.action || "console"}: ${code}: ${error.message}`;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.textContent = "×";
  dismiss.title = "dismiss";
  dismiss.addEventListener("click", () => item.remove());
  item.append(dismiss);
  $("#errors").prepend(item);
}

function note(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("#activity").prepend(item);
  while ($("#activity").children.length > 50) $("#activity").lastElementChild.remove();
}

function setStatus(stateName, text) {
  $("#status").dataset.state = stateName;
  $("#status").textContent = text;
}

// ---- talking to the stack ----

async function mintToken() {
  // The local stack's development endpoint (decision 0040); in AWS the CRM hands the front end its token.
  const { userId, companyId, lifetime } = state.me;
  const response = await fetch("/console/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId, companyId, expiresIn: lifetime }),
  });
  const body = await response.json();
  if (!response.ok) throw new ServerError(body.error.code, body.error.message, "token");
  return body.token;
}

// One action with an ack: its data, or a ServerError carrying the server's code and message.
async function call(namespace, action, argument) {
  const socket = state.sockets[namespace];
  if (!socket.connected) throw new ServerError("disconnected", "not connected; retrying by itself", action);
  let reply;
  try {
    reply = await (argument === undefined
      ? socket.timeout(ACK_TIMEOUT_MS).emitWithAck(action)
      : socket.timeout(ACK_TIMEOUT_MS).emitWithAck(action, argument));
  } catch {
    throw new ServerError("timeout", `no answer within ${ACK_TIMEOUT_MS / 1000} s`, action);
  }
  if (!reply.ok) throw new ServerError(reply.error.code, reply.error.message, action);
  return reply.data;
}

// Runs an action for a user gesture and shows its failure rather than dropping it.
async function attempt(work, action) {
  try {
    return await work();
  } catch (error) {
    showError(error, action);
    return undefined;
  }
}

// The handshake's query: the token, and `recovery=1` when sessions are on (docs/socketio.md).
function handshakeQuery(token) {
  return state.me.recovery ? { token, recovery: "1" } : { token };
}

async function connect() {
  const token = await mintToken();
  const options = { transports: ["websocket"], query: handshakeQuery(token), reconnectionDelayMax: 2000 };
  const conversations = io(`${location.origin}/conversations`, options);
  const manager = conversations.io; // one WebSocket for the three namespaces
  state.sockets = {
    conversations,
    notifications: manager.socket("/notifications"),
    analytics: manager.socket("/analytics"),
  };
  // A reconnection must present a valid token: mint one as soon as the connection is lost (and again after a
  // refused attempt), before the Manager's next attempt reads `opts.query`.
  const refresh = async () => {
    try {
      manager.opts.query = handshakeQuery(await mintToken());
    } catch {
      // The stack is down: the next refused attempt tries again.
    }
  };
  manager.on("close", (reason) => {
    state.heardSinceLost = 0;
    setStatus("reconnecting", "reconnecting…");
    note(`connection lost (${reason})`);
    refresh();
  });
  manager.on("reconnect_error", refresh);
  manager.on("reconnect", (attempts) => note(`reconnected after ${attempts} attempt(s)`));
  // The main namespace carries the reason of a close the server decides (an expired token, flooding), sent
  // just before it closes the connection.
  manager.socket("/").on("error", (data) => showError(new ServerError(data.code, data.message, "connection")));
  wireConversations(conversations);
  wireNotifications(state.sockets.notifications);
  wireAnalytics(state.sockets.analytics);
  for (const socket of Object.values(state.sockets)) {
    socket.on("error", (data) => showError(new ServerError(data.code, data.message, data.action)));
  }
}

// ---- conversations ----

function wireConversations(socket) {
  socket.on("connect", async () => {
    for (const button of document.querySelectorAll("#create button, #open-by-id button")) button.disabled = false;
    if (socket.recovered) {
      // The session came back: what was missed was replayed before this, and the rooms are restored.
      setStatus("connected", "connected · recovered");
      note(`session recovered: ${state.heardSinceLost} missed message(s) replayed, rooms restored`);
      await attempt(loadPresence, "presence:list");
      return;
    }
    setStatus("connected", "connected");
    await attempt(loadPresence, "presence:list");
    if (state.openId) await attempt(() => rejoin(state.openId), "join:conversation");
  });
  socket.on("connect_error", (error) => {
    setStatus("reconnecting", "cannot connect; retrying…");
    note(`connect error: ${error.message}`);
  });
  socket.on("message:new", (message) => {
    state.heardSinceLost += 1;
    if (message.conversationId !== state.openId) return;
    if (state.loaded && message.seq > state.lastSeq + 1) {
      // Something came in between that this connection did not hear: history has it (docs/protocol.md).
      attempt(() => fillGap(message.conversationId), "conversation:history");
      return;
    }
    addMessages([message]);
  });
  socket.on("message:updated", (message) => {
    if (message.conversationId === state.openId) addMessages([message]);
  });
  socket.on("message:deleted", (tombstone) => {
    if (tombstone.conversationId !== state.openId) return;
    for (const message of state.messages.values()) {
      if (message.id === tombstone.id) {
        delete message.content;
        Object.assign(message, { deleted: true, deletedAt: tombstone.deletedAt });
      }
    }
    renderMessages();
  });
  socket.on("conversation:typing", ({ conversationId, userId, isTyping }) => {
    if (conversationId !== state.openId) return;
    clearTimeout(state.typists.get(userId));
    state.typists.delete(userId);
    if (isTyping) {
      state.typists.set(userId, setTimeout(() => {
        state.typists.delete(userId);
        renderTyping();
      }, TYPING_SHOWN_MS));
    }
    renderTyping();
  });
  socket.on("conversation:updated", ({ conversation }) => {
    rememberConversation(conversation);
    note(`conversation ${conversation.subject || conversation.id} is ${conversation.status}`);
  });
  socket.on("status:online", ({ userId }) => {
    state.online.add(userId);
    renderPresence();
  });
  socket.on("status:offline", ({ userId }) => {
    state.online.delete(userId);
    renderPresence();
  });
  // A large company's presence comes in digests (PRESENCE_DIGEST_THRESHOLD): apply it, and say what it held.
  socket.on("presence:changed", ({ online, offline }) => {
    for (const userId of online) state.online.add(userId);
    for (const userId of offline) state.online.delete(userId);
    state.lastDigest = { online, offline };
    renderPresence();
  });
  socket.on("campaign:started", ({ name }) => note(`campaign started: ${name}`));
  socket.on("contact:tagged", ({ contactId, tag }) => note(`contact ${contactId} tagged ${tag}`));
}

async function loadPresence() {
  state.online.clear();
  let cursor = null;
  do {
    const page = await call("conversations", "presence:list", cursor ? { cursor } : {});
    for (const user of page.users) state.online.add(user.userId);
    cursor = page.nextCursor;
  } while (cursor);
  renderPresence();
}

// The protocol has no list of a company's conversations: the console keeps those it has heard of (created,
// announced by `conversation:updated`, opened by id), per company and user, in this browser.
function storageKey() {
  return `roomcast-console:${state.me.companyId}:${state.me.userId}:conversations`;
}

function rememberConversation(conversation) {
  state.conversations.set(conversation.id, conversation);
  localStorage.setItem(storageKey(), JSON.stringify([...state.conversations.values()]));
  renderConversations();
  if (conversation.id === state.openId) renderConversationHead();
}

function restoreConversations() {
  const kept = JSON.parse(localStorage.getItem(storageKey()) || "[]");
  for (const conversation of kept) state.conversations.set(conversation.id, conversation);
  renderConversations();
}

async function openConversation(conversationId) {
  if (state.openId && state.openId !== conversationId) {
    const previous = state.openId;
    attempt(() => call("conversations", "leave:conversation", { conversationId: previous }), "leave:conversation");
  }
  state.openId = conversationId;
  state.loaded = false;
  $("#conversation").dataset.state = "joining";
  state.messages.clear();
  state.lastSeq = 0;
  state.olderCursor = null;
  for (const timer of state.typists.values()) clearTimeout(timer);
  state.typists.clear();
  $("#conversation").hidden = false;
  renderConversationHead();
  renderMessages();
  renderTyping();
  renderConversations();
  try {
    await call("conversations", "join:conversation", { conversationId });
    const page = await call("conversations", "conversation:history", { conversationId, limit: HISTORY_PAGE });
    state.olderCursor = page.nextCursor;
    state.loaded = true;
    addMessages(page.messages, { contiguous: true });
    $("#conversation").dataset.state = "joined";
  } catch (error) {
    showError(error);
    if (error.code === "not_found") forgetConversation(conversationId);
  }
}

function forgetConversation(conversationId) {
  state.conversations.delete(conversationId);
  localStorage.setItem(storageKey(), JSON.stringify([...state.conversations.values()]));
  if (state.openId === conversationId) {
    state.openId = null;
    $("#conversation").hidden = true;
  }
  renderConversations();
}

// After a reconnection: the new connection is in no conversation room yet, and whatever was written while
// the console was away is in history after the last seq it saw.
async function rejoin(conversationId) {
  await call("conversations", "join:conversation", { conversationId });
  const missed = await fillGap(conversationId);
  note(`rejoined; ${missed} missed message(s) fetched from history`);
}

async function fillGap(conversationId) {
  let missed = 0;
  let after = state.lastSeq;
  for (;;) {
    const page = await call("conversations", "conversation:history", { conversationId, after, limit: 100 });
    if (conversationId !== state.openId) return missed;
    missed += page.messages.filter((message) => !state.messages.has(message.seq)).length;
    addMessages(page.messages, { contiguous: true });
    if (page.nextCursor === null) return missed;
    after = page.nextCursor;
  }
}

async function loadOlder() {
  const conversationId = state.openId;
  const page = await call("conversations", "conversation:history", {
    conversationId, before: state.olderCursor, limit: HISTORY_PAGE,
  });
  if (conversationId !== state.openId) return;
  state.olderCursor = page.nextCursor;
  addMessages(page.messages);
}

// History pages and events overlap (a message sent between join and history is in both): seq is the key.
function addMessages(messages, { contiguous = false } = {}) {
  for (const message of messages) state.messages.set(message.seq, { ...state.messages.get(message.seq), ...message });
  if (contiguous) {
    // The newest page on open, and a gap's pages, end at the newest message: lastSeq is their highest seq.
    for (const message of messages) state.lastSeq = Math.max(state.lastSeq, message.seq);
  }
  while (state.messages.has(state.lastSeq + 1)) state.lastSeq += 1;
  renderMessages();
}

async function send(content) {
  const conversationId = state.openId;
  const clientMessageId = crypto.randomUUID();
  stopTyping();
  const sent = await call("conversations", "message:send", { conversationId, content, clientMessageId });
  // Our own message:new normally comes first; until it does, show what was stored.
  if (conversationId === state.openId && !state.messages.has(sent.seq)) {
    addMessages([{
      id: sent.id, seq: sent.seq, conversationId, content, clientMessageId,
      fromUserId: state.me.userId, senderType: "agent", timestamp: new Date().toISOString(),
    }]);
  }
}

function typing() {
  const now = Date.now();
  if (!state.openId || now - state.typingSentAt < TYPING_EVERY_MS) return;
  state.typingSentAt = now;
  attempt(() => call("conversations", "conversation:typing", { conversationId: state.openId, isTyping: true }),
    "conversation:typing");
}

function stopTyping() {
  if (!state.typingSentAt || !state.openId) return;
  state.typingSentAt = 0;
  attempt(() => call("conversations", "conversation:typing", { conversationId: state.openId, isTyping: false }),
    "conversation:typing");
}

// ---- notifications ----

function wireNotifications(socket) {
  socket.on("connect", () => attempt(() => loadNotifications(true), "notification:list"));
  socket.on("notification:new", ({ notification }) => {
    if (!state.notifications.has(notification.id) && !notification.readAt) state.unread += 1;
    state.notifications = new Map([[notification.id, notification], ...state.notifications]);
    note(`notification: ${notification.title}`);
    renderNotifications();
  });
  // Another of the user's connections (or this one) read some: the server's count is the truth.
  socket.on("notification:read", ({ id, readAt }) => {
    const notification = state.notifications.get(id);
    if (notification) notification.readAt = readAt;
    attempt(() => loadNotifications(true), "notification:list");
  });
  socket.on("notification:all_read", () => attempt(() => loadNotifications(true), "notification:list"));
}

async function loadNotifications(fromStart) {
  const page = await call("notifications", "notification:list",
    fromStart ? { limit: 20 } : { limit: 20, cursor: state.notificationsCursor });
  if (fromStart) state.notifications = new Map();
  for (const notification of page.notifications) state.notifications.set(notification.id, notification);
  state.unread = page.unreadCount;
  state.notificationsCursor = page.nextCursor;
  renderNotifications();
}

// ---- analytics ----

function wireAnalytics(socket) {
  socket.on("connect", async () => {
    await attempt(() => call("analytics", "analytics:subscribe"), "analytics:subscribe");
    await attempt(requestFigures, "analytics:request");
  });
  socket.on("metrics:update", (figures) => {
    if (state.period === figures.period) renderFigures(figures);
  });
}

async function requestFigures() {
  const period = state.period;
  const figures = await call("analytics", "analytics:request", { period });
  if (period === state.period) renderFigures(figures);
}

// ---- rendering ----

function renderConversations() {
  const list = $("#conversations");
  list.replaceChildren();
  const newestFirst = [...state.conversations.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  for (const conversation of newestFirst) {
    const item = document.createElement("li");
    item.dataset.id = conversation.id;
    item.classList.toggle("open", conversation.id === state.openId);
    const title = document.createElement("button");
    title.type = "button";
    title.textContent = conversation.subject || conversation.id;
    title.addEventListener("click", () => openConversation(conversation.id));
    const status = document.createElement("span");
    status.className = `badge status-${conversation.status}`;
    status.textContent = conversation.status;
    item.append(title, status);
    list.append(item);
  }
}

function renderConversationHead() {
  const conversation = state.conversations.get(state.openId);
  $("#conversation-subject").textContent = conversation?.subject || state.openId || "";
  $("#conversation-status").value = conversation?.status || "open";
}

function renderMessages() {
  const list = $("#messages");
  list.replaceChildren();
  const inOrder = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  for (const message of inOrder) list.append(messageItem(message));
  list.scrollTop = list.scrollHeight;
  $("#older").hidden = state.olderCursor === null || state.olderCursor === undefined;
}

function messageItem(message) {
  const item = document.createElement("li");
  const own = message.senderType === "agent" && message.fromUserId === state.me.userId;
  item.dataset.seq = message.seq;
  item.dataset.id = message.id;
  item.classList.toggle("own", own);
  item.classList.toggle("deleted", Boolean(message.deleted));
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.senderType === "contact" ? `contact ${message.contactId}` : message.fromUserId;
  const time = document.createElement("time");
  time.dateTime = message.timestamp;
  time.textContent = new Date(message.timestamp).toLocaleTimeString();
  const content = document.createElement("span");
  content.className = "content";
  content.textContent = message.deleted ? "message deleted" : message.content;
  item.append(author, time, content);
  if (message.editedAt && !message.deleted) {
    const edited = document.createElement("small");
    edited.textContent = " (edited)";
    item.append(edited);
  }
  if (own && !message.deleted) {
    item.append(
      actionButton("edit", () => editInPlace(item, message)),
      actionButton("delete", () => attempt(() => call("conversations", "message:delete",
        { conversationId: message.conversationId, messageId: message.id }), "message:delete")),
    );
  }
  return item;
}

function actionButton(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `message-${label}`;
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

function editInPlace(item, message) {
  const form = document.createElement("form");
  form.className = "edit";
  const input = document.createElement("input");
  input.name = "content";
  input.value = message.content;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "save";
  form.append(input, save);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const edited = await attempt(() => call("conversations", "message:edit",
      { conversationId: message.conversationId, messageId: message.id, content: input.value }), "message:edit");
    if (edited) addMessages([edited.message]);
  });
  item.querySelector(".content").replaceWith(form);
  input.focus();
}

function renderTyping() {
  const names = [...state.typists.keys()];
  $("#typing").textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function renderPresence() {
  const list = $("#presence");
  list.replaceChildren();
  for (const userId of [...state.online].sort()) {
    const item = document.createElement("li");
    item.dataset.user = userId;
    item.textContent = userId === state.me.userId ? `${userId} (you)` : userId;
    list.append(item);
  }
  const digest = state.lastDigest;
  $("#presence-digest").textContent = digest === null ? "" :
    `last digest: ${digest.online.length} came online, ${digest.offline.length} went offline`;
}

function renderNotifications() {
  $("#badge").textContent = String(state.unread);
  $("#badge").hidden = state.unread === 0;
  const list = $("#notifications");
  list.replaceChildren();
  for (const notification of state.notifications.values()) {
    const item = document.createElement("li");
    item.dataset.id = notification.id;
    item.classList.toggle("unread", !notification.readAt);
    const title = document.createElement("strong");
    title.textContent = notification.title;
    const body = document.createElement("span");
    body.textContent = notification.body || "";
    item.append(title, body);
    if (!notification.readAt) {
      item.append(actionButton("read", () => attempt(() => call("notifications", "notification:read",
        { notificationId: notification.id }), "notification:read")));
    }
    list.append(item);
  }
  $("#more-notifications").hidden = !state.notificationsCursor;
}

function renderFigures(figures) {
  const shown = {
    totalMessages: String(figures.totalMessages),
    totalConversations: String(figures.totalConversations),
    averageResponseTime: `${Number(figures.averageResponseTime).toFixed(1)} s`,
    conversionRate: `${Math.round(Number(figures.conversionRate) * 100)} %`,
  };
  for (const [name, text] of Object.entries(shown)) $(`[data-figure="${name}"]`).textContent = text;
}

// ---- the page's controls ----

$("#sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  state.me = {
    companyId: form.company.value.trim(),
    userId: form.user.value.trim(),
    lifetime: Number(form.lifetime.value),
    recovery: form.recovery.checked,
  };
  try {
    await connect();
  } catch (error) {
    showError(error, "sign in");
    return;
  }
  form.hidden = true;
  $("#identity").hidden = false;
  $("#identity").textContent = `${state.me.userId} @ ${state.me.companyId}`;
  $("#bell").disabled = false;
  setStatus("connecting", "connecting…");
  restoreConversations();
});

$("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const subject = event.target.subject.value.trim();
  const created = await attempt(() => call("conversations", "conversation:create", subject ? { subject } : {}),
    "conversation:create");
  if (!created) return;
  event.target.reset();
  rememberConversation(created.conversation);
  openConversation(created.conversation.id);
});

$("#open-by-id").addEventListener("submit", (event) => {
  event.preventDefault();
  const conversationId = event.target.conversationId.value.trim();
  event.target.reset();
  openConversation(conversationId);
});

$("#conversation-status").addEventListener("change", async (event) => {
  const updated = await attempt(() => call("conversations", "conversation:update",
    { conversationId: state.openId, status: event.target.value }), "conversation:update");
  if (updated) rememberConversation(updated.conversation);
  else renderConversationHead();
});

$("#older").addEventListener("click", () => attempt(loadOlder, "conversation:history"));

// Whatever is typed is sent, an empty message too: the server's answer is what the user should see.
$("#composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = event.target.content;
  const content = field.value;
  try {
    await send(content);
    field.value = "";
  } catch (error) {
    showError(error, "message:send");
  }
});
$("#composer textarea").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("#composer").requestSubmit();
  }
});
$("#composer textarea").addEventListener("input", typing);
$("#composer textarea").addEventListener("blur", stopTyping);

$("#bell").addEventListener("click", () => {
  $("#notifications-pane").hidden = !$("#notifications-pane").hidden;
});
$("#all-read").addEventListener("click", () => attempt(() => call("notifications", "notification:all_read"),
  "notification:all_read"));
$("#more-notifications").addEventListener("click", () => attempt(() => loadNotifications(false),
  "notification:list"));

for (const button of document.querySelectorAll("#periods button")) {
  button.addEventListener("click", () => {
    state.period = button.dataset.period;
    for (const other of document.querySelectorAll("#periods button")) {
      other.setAttribute("aria-selected", String(other === button));
    }
    attempt(requestFigures, "analytics:request");
  });
}

// `?company=acme&user=ana` fills the form, so a bookmark (or a second tab) signs in as someone else.
const wanted = new URLSearchParams(location.search);
for (const field of ["company", "user"]) {
  if (wanted.get(field)) $("#sign-in")[field].value = wanted.get(field);
}
