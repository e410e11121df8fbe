// Admission tokens from the waiting room, kept per concert so a refresh keeps shopping time.
const key = (concertId) => `tr.admission.${concertId}`;

export function saveAdmission(concertId, status) {
  localStorage.setItem(key(concertId), JSON.stringify({
    sale_id: status.sale_id,
    token: status.admission_token,
    expires_at: status.admission_expires_at,
  }));
}

export function admission(concertId) {
  try {
    const saved = JSON.parse(localStorage.getItem(key(concertId)));
    if (saved && new Date(saved.expires_at) > new Date()) return saved;
  } catch {
    // unreadable: treated as none
  }
  return null;
}

export function dropAdmission(concertId) {
  localStorage.removeItem(key(concertId));
}
