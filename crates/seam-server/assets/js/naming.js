// The integration-name → schema-name rule, as in seam_core::naming::schema_name, so the form can show
// it as you type; the server's answer (GET /ui/schema-name) is the authority and replaces it.

export const MAX_SCHEMA_NAME_LEN = 63;

/** "Stitch Zendesk" → "stitch_zendesk"; null when nothing is left. */
export function schemaName(displayName) {
  let out = "";
  for (const c of displayName.trim()) {
    if (c === " " || c === "-" || c === "_") out += "_";
    else if (/^[A-Za-z0-9]$/.test(c)) out += c.toLowerCase();
  }
  return out === "" ? null : out;
}

export function validSchemaName(name) {
  return /^[a-z0-9_]+$/.test(name) && name.length <= MAX_SCHEMA_NAME_LEN;
}
