// A kicked socket.io-client (docs/socketio.md, "When the server ends a user's access"): reconnection left on, as front ends have it. Prints
// "ready" once both namespaces are connected; the test then publishes Disconnect. Each namespace must report
// `io server disconnect` and the client must not reconnect by itself. Exits non-zero on the first failure.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const options = { transports: ["websocket"], query: { token: process.env.TOKEN }, reconnectionDelay: 100, reconnectionDelayMax: 200 };
const conversations = io(`${process.env.ROOMCAST_URL}/conversations`, options);
const manager = conversations.io;
const notifications = manager.socket("/notifications");
const reasons = [];
let attempts = 0;
manager.on("reconnect_attempt", () => (attempts += 1));
for (const socket of [conversations, notifications]) {
  socket.on("disconnect", (reason) => reasons.push([socket.nsp, reason]));
}
const connected = (socket) => new Promise((resolve, reject) => {
  if (socket.connected) return resolve();
  socket.once("connect", resolve);
  socket.once("connect_error", reject);
});
await Promise.all([connected(conversations), connected(notifications)]);
console.log("ready");

const until = Date.now() + Number(process.env.WITHIN_MS || 5000);
while (reasons.length < 2 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
assert.deepEqual(reasons.sort(), [["/conversations", "io server disconnect"], ["/notifications", "io server disconnect"]]);
// Well past the reconnection delay: nothing reconnects.
await new Promise((resolve) => setTimeout(resolve, 1500));
assert.equal(attempts, 0);
assert.equal(conversations.connected || notifications.connected, false);
console.log("kicked");
process.exit(0);
