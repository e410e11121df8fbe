// Plain-language messages for every problem `type` a fan or organizer can meet.
const MESSAGES = {
  "seat-taken": "Sorry, another fan just took that seat. Pick a different one — the map is updated.",
  "sold-out": "Sold out: there are no tickets left for this concert.",
  "hold-expired": "Your hold expired and the seats went back on sale. Pick your seats again.",
  "payment-declined": "Your payment was declined. Nothing was charged; you can try again while your hold lasts.",
  "payment-unavailable": "Payments are unavailable for a moment. Your seats stay held; try again shortly.",
  "payment-provider-error": "The payment provider had a problem. Your seats stay held; try again shortly.",
  "payment-conflict": "This payment is already being processed. Wait a moment and check My tickets.",
  "rate-limited": "You're going a bit fast. Please wait {retry} and try again.",
  "chat-rate-limited": "You're sending messages too quickly. Wait a moment.",
  "chat-slow-mode": "Slow mode is on in this room: wait a little before your next message.",
  "chat-muted": "You are muted in this room.",
  "chat-banned": "You are banned from this room.",
  "booking-contention": "Many fans are trying for these seats right now. Please try again.",
  "lock-lost": "That took too long and nothing was booked. Please try again.",
  "booking-queue-unavailable": "Bookings can't be accepted right now; nothing was booked. Try again in a moment.",
  "ticket-limit-exceeded": "You've reached the ticket limit per fan for this concert.",
  "not-on-sale": "This concert is not on sale.",
  "invalid-booking-state": "This booking can't do that any more (it may be paid, cancelled or expired).",
  "admission-required": "This concert sells through a waiting room. Join the queue first.",
  "admission-expired": "Your shopping time ran out. Join the waiting room again.",
  "admission-revoked": "Your shopping time has ended (the sale may have closed).",
  "admission-invalid": "Your admission is not valid any more. Join the waiting room again.",
  "admission-other-sale": "This admission is for another sale.",
  "admission-other-fan": "This admission belongs to another account.",
  "sale-closed": "This sale is over.",
  "pre-queue-not-open": "The waiting room doesn't accept fans yet. Come back closer to the opening time.",
  "not-in-queue": "You don't have a place in this queue.",
  "sale-not-found": "This sale doesn't exist.",
  "concert-not-found": "This concert doesn't exist.",
  "artist-not-found": "This artist doesn't exist.",
  "invalid-credentials": "Wrong email or password.",
  "email-taken": "An account with this email already exists. Log in instead.",
  "invalid-token": "Your session ended. Please log in again.",
  "unauthorized": "Please log in first.",
  "forbidden": "You don't have permission to do that.",
  "network-error": "The server can't be reached. Check your connection.",
  "service-unavailable": "The service is busy. Please try again in a moment.",
  "validation-error": "Some fields are not valid: {detail}",
  "rate-out-of-bounds": "That rate is outside the sale's allowed range.",
  "invalid-sale-state": "The sale can't do that in its current state.",
  "sale-exists": "This concert already has a sale that is not closed.",
  "concert-not-sellable": "The concert must be on sale (with a seat map or stock) before it gets a sale.",
};

export function messageFor(error) {
  const slug = error?.slug || "";
  const template = MESSAGES[slug];
  const retry = error?.retryAfter ? `${error.retryAfter} s` : "a few seconds";
  if (slug === "validation-error" && Array.isArray(error.problem?.errors)) {
    const fields = error.problem.errors.map((e) => `${e.field || "request"}: ${e.message}`);
    return `Some fields are not valid — ${fields.join("; ")}`;
  }
  if (template) return template.replace("{retry}", retry).replace("{detail}", error.message || "");
  return error?.message || "Something went wrong. Please try again.";
}
