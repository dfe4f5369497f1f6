/**
 * JSON Schema `format` values the grammar enforces, each as an anchored regular expression for
 * `regex_ebnf.ts`. Every expression accepts a subset of what the format allows (as ajv-formats
 * checks it in "full" mode): dates use days 01-28 for February, times carry a time zone, IPv6 is
 * written in full, hostnames have at most four labels of at most 32 characters, an email's local
 * part is up to three runs of letters and digits joined by single `.`, `_`, `+` or `-`.
 *
 * @module
 */

const DATE =
  "\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))";
const TIME = "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)";
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?";
const HOST = `${LABEL}(?:\\.${LABEL}){0,3}`;
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const PATH = "(?:/[A-Za-z0-9._~-]{1,32}){0,8}";

/** Format name -> anchored regular expression (a subset of the format). */
export const FORMAT_PATTERNS: Readonly<Record<string, string>> = Object.freeze({
  "date": `^${DATE}$`,
  "time": `^${TIME}$`,
  "date-time": `^${DATE}T${TIME}$`,
  "duration": "^P(?:\\d{1,4}D|\\d{1,4}W|(?:\\d{1,4}D)?T\\d{1,4}[HMS])$",
  "email": `^[A-Za-z0-9]{1,16}(?:[._+-][A-Za-z0-9]{1,16}){0,2}@${LABEL}(?:\\.${LABEL}){0,2}\\.[a-z]{2,8}$`,
  "hostname": `^${HOST}$`,
  "ipv4": `^${OCTET}(?:\\.${OCTET}){3}$`,
  "ipv6": "^[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}$",
  "uuid": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
  "uri": `^https?://${HOST}(?::[1-9]\\d{0,3})?${PATH}(?:\\?[A-Za-z0-9_-]{1,16}=[A-Za-z0-9_-]{0,32})?$`,
  "uri-reference": `^(?:https?://${HOST}(?::[1-9]\\d{0,3})?)?${PATH}$`,
  "json-pointer": "^(?:/(?:[A-Za-z0-9_-]|~[01]){0,32}){0,8}$",
});
