// Package event is the strict model of the events platform services emit to
// Custos, as specified in the event contract (docs/schemas/, docs/vocabulary.md): CloudEvents 1.0
// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md) in
// structured JSON mode or HTTP binary mode, carrying one of the twelve
// privacy.* data payloads.
//
// Decoding is deliberately stricter than encoding/json: unknown or misspelt
// members (matched case-sensitively), duplicate object keys, nesting deeper
// than MaxDepth, invalid UTF-8, wrong JSON types, unknown vocabulary terms,
// invalid regions, durations and times are all rejected with a *FieldError
// naming the first offending field by its path ("data.categories[1]"). The
// ledger is append-only, so anything ambiguous has to be refused before it
// is written.
//
// Error messages never repeat a submitted value: a subject identifier or a
// personal field value must not leak into logs or HTTP responses through an
// error. Field paths name only schema members, and a member name that does
// not look like a schema identifier is not echoed either.
//
// The vocabulary (categories, purposes, recipient kinds, sharing bases,
// transfer mechanisms, rights, outcomes, erasure reasons) comes from the
// first user's privacy policy: docs/vocabulary.md names each term's clause
// and maps it to the W3C Data Privacy Vocabulary, and docs/schemas holds one
// JSON Schema (draft 2020-12) per event type.
package event
