// A real stompjs client driven over stdin/stdout by tests/chat (one JSON object per line).
// argv[2]: {"url", "connectHeaders", "heartbeatIncoming", "heartbeatOutgoing"}
// stdin ops: {"op":"subscribe","destination","id","receipt"} · {"op":"send","destination",
//   "body","receipt"} · {"op":"unsubscribe","id"} · {"op":"disconnect"}
// stdout events: connected · message · receipt · error · close
import { createInterface } from "node:readline";
import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

const options = JSON.parse(process.argv[2]);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const subscriptions = new Map();

const client = new Client({
  webSocketFactory: () => new WebSocket(options.url, ["v12.stomp", "v11.stomp", "v10.stomp"]),
  connectHeaders: options.connectHeaders ?? {},
  heartbeatIncoming: options.heartbeatIncoming ?? 10000,
  heartbeatOutgoing: options.heartbeatOutgoing ?? 10000,
  reconnectDelay: 0,
  onConnect: (frame) => emit({ type: "connected", headers: frame.headers }),
  onStompError: (frame) => emit({ type: "error", headers: frame.headers, body: frame.body }),
  onWebSocketClose: (event) => {
    emit({ type: "close", code: event.code });
    process.exit(0);
  },
  onWebSocketError: () => emit({ type: "ws-error" }),
});
client.onUnhandledReceipt = (frame) => emit({ type: "receipt", id: frame.headers["receipt-id"] });

createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "subscribe") {
    const headers = { id: cmd.id };
    if (cmd.receipt) headers.receipt = cmd.receipt;
    const sub = client.subscribe(
      cmd.destination,
      (message) => emit({ type: "message", headers: message.headers, body: message.body }),
      headers,
    );
    subscriptions.set(cmd.id, sub);
  } else if (cmd.op === "send") {
    const headers = cmd.receipt ? { receipt: cmd.receipt } : {};
    client.publish({ destination: cmd.destination, body: cmd.body, headers });
  } else if (cmd.op === "unsubscribe") {
    subscriptions.get(cmd.id)?.unsubscribe();
  } else if (cmd.op === "disconnect") {
    client.deactivate();
  }
});

setTimeout(() => {
  emit({ type: "timeout" });
  process.exit(2);
}, options.lifetimeMs ?? 60000);
client.activate();
