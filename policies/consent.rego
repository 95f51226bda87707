package custos.decision

# ---------------------------------------------------------------------------
# Privacy notices.
# ---------------------------------------------------------------------------

notice_list := v if {
	v := input.notices.versions
	is_array(v)
} else := []

# The effective time of each published notice version (the earliest, should a
# version have been published twice).
notice_effective[v] := min({time.parse_rfc3339_ns(n.effective) | some n in notice_list; n.version == v}) if {
	some m in notice_list
	v := m.version
}

# Effective times of the notices in force whose publication requires fresh
# consent (data.custos.config.notices.reconsent_required).
reconsent_in_force contains ns if {
	some v in object.get(data.custos.config, ["notices", "reconsent_required"], [])
	ns := notice_effective[v]
	ns <= now_ns
}

# A consent given to notice version v is superseded when a notice requiring
# fresh consent took effect after v did; a consent to an unknown version is
# superseded as soon as any such notice is in force.
notice_superseded(v) if {
	some r in reconsent_in_force
	notice_effective[v] < r
}

notice_superseded(v) if {
	count(reconsent_in_force) > 0
	not notice_effective[v]
}

# ---------------------------------------------------------------------------
# privacy.consent.granted: a record of what the subject said. It is accepted
# even when it names what the policy would refuse (the processing is what gets
# refused), except in the cases below.
# ---------------------------------------------------------------------------

deny contains reason("GUARDIAN_CONSENT_REQUIRED", "a consent from a subject under the guardian age must be given with a guardian") if {
	input.event.type == "privacy.consent.granted"
	minor
	not event_data.guardian == true
}

deny contains reason("NOTICE_UNKNOWN", sprintf("notice version %q has not been published", [v])) if {
	input.event.type == "privacy.consent.granted"
	count(notice_list) > 0
	v := event_data.notice_version
	not notice_effective[v]
}

deny contains reason("NOTICE_SUPERSEDED", sprintf("notice version %q has been superseded by a notice that requires fresh consent", [v])) if {
	input.event.type == "privacy.consent.granted"
	v := event_data.notice_version
	notice_effective[v]
	notice_superseded(v)
}

# ---------------------------------------------------------------------------
# The state of each consent the subject has given, by index.
# ---------------------------------------------------------------------------

consents := c if {
	c := input.subject.consents
	is_array(c)
} else := []

expired(c) if {
	is_string(c.expires)
	time.parse_rfc3339_ns(c.expires) <= now_ns
}

superseded(c) if {
	count(reconsent_in_force) > 0
	notice_superseded(c.notice_version)
}

# A consent is in force when it is neither withdrawn as a whole, nor expired,
# nor given to a superseded notice.
in_force(c) if {
	not c.withdrawn == true
	not expired(c)
	not superseded(c)
}

withdrawn_ids contains i if {
	some i, c in consents
	c.withdrawn == true
}

expired_ids contains i if {
	some i, c in consents
	expired(c)
}

superseded_ids contains i if {
	some i, c in consents
	superseded(c)
}

# Consents neither withdrawn as a whole, nor expired, nor superseded.
live contains i if {
	some i, _ in consents
	not i in withdrawn_ids
	not i in expired_ids
	not i in superseded_ids
}

scope_withdrawn(c, kind, item) if item in c.withdrawn_scope[kind]

# Consent i is withdrawn for the items (an object of scope kind to a list of
# items) when it was withdrawn as a whole or any item was withdrawn by scope.
withdrawn_for(i, _) if i in withdrawn_ids

withdrawn_for(i, items) if {
	some kind, list in items
	some item in list
	scope_withdrawn(consents[i], kind, item)
}

# explain names why the consents in ids, which would have covered what is
# missing but are not in force for it, do not count: a withdrawal first, then
# an expiry, then a superseded notice; fallback when there is no such consent.
explain(ids, items, fallback) := "CONSENT_WITHDRAWN" if {
	some i in ids
	withdrawn_for(i, items)
} else := "CONSENT_EXPIRED" if {
	some i in ids
	i in expired_ids
} else := "NOTICE_SUPERSEDED" if {
	some i in ids
	i in superseded_ids
} else := fallback

gap_message(code, what, missing) := sprintf("the consent covering %s has been withdrawn", [what]) if {
	code == "CONSENT_WITHDRAWN"
} else := sprintf("the consent covering %s has expired", [what]) if {
	code == "CONSENT_EXPIRED"
} else := sprintf("the consent covering %s was given to a superseded privacy notice", [what]) if {
	code == "NOTICE_SUPERSEDED"
} else := missing

# ---------------------------------------------------------------------------
# Consent coverage of a processing event. The common case is checked first:
# one consent in force covers everything the event needs. Only when none does
# is coverage checked in stages — the cross-border destination, the purpose,
# the recipient, each category — to report the first stage no consent in force
# passes, and why.
# ---------------------------------------------------------------------------

# The fast path reads the input directly and may miss a coverage the stages
# would find (with a malformed consent, say); it never claims one they would
# not, so the stages decide whenever it fails.
covered_by_one if {
	d := xborder_dest
	p := event_purpose
	some c in input.subject.consents
	d in c.destinations
	p in c.purposes
	covers_all(c, p)
	not d in c.withdrawn_scope.destinations
}

covered_by_one if {
	not xborder_dest
	p := event_purpose
	some c in input.subject.consents
	p in c.purposes
	covers_all(c, p)
}

covers_all(c, p) if {
	covers_recipient(c)
	is_array(c.categories)
	not category_missing(c)
	not p in c.withdrawn_scope.purposes
	c.withdrawn == false
	not expired(c)
	not superseded(c)
}

# c.categories is an array here: were it missing, the negation would fail
# rather than hold.
category_missing(c) if {
	some k in input.event.data.categories
	not startswith(k, "cookie.")
	not k in c.categories
}

category_missing(c) if {
	some k in input.event.data.categories
	k in c.withdrawn_scope.categories
}

# What no single consent covers, stage by stage (below).
deny contains r if {
	consent_required
	not covered_by_one
	some r in consent_gap
}

dest_items := {"destinations": [d]} if {
	d := xborder_dest
} else := {}

purpose_items := object.union(dest_items, {"purposes": [event_purpose]})

# Stage 1: consents naming the cross-border destination (all consents when the
# event does not cross the border).
named contains i if {
	d := xborder_dest
	some i, c in consents
	d in c.destinations
}

named contains i if {
	not xborder_dest
	some i, _ in consents
}

active_named contains i if {
	some i in named
	i in live
	not destination_withdrawn(i)
}

destination_withdrawn(i) if {
	d := xborder_dest
	scope_withdrawn(consents[i], "destinations", d)
}

stage_destination_passed if not xborder_dest

stage_destination_passed if count(active_named) > 0

consent_gap contains reason("NO_SEPARATE_CONSENT", sprintf("no consent names %s as a cross-border destination", [d])) if {
	d := xborder_dest
	count(named) == 0
}

consent_gap contains reason(code, gap_message(code, what, sprintf("no consent in force names %s", [d]))) if {
	d := xborder_dest
	count(named) > 0
	count(active_named) == 0
	code := explain(named, dest_items, "NO_SEPARATE_CONSENT")
	what := sprintf("destination %s", [d])
}

# Stage 2: the purpose.
purpose_named contains i if {
	some i in named
	event_purpose in consents[i].purposes
}

purpose_active contains i if {
	some i in active_named
	p := event_purpose
	p in consents[i].purposes
	not scope_withdrawn(consents[i], "purposes", p)
}

consent_gap contains reason(code, gap_message(code, what, sprintf("no consent covers %s", [what]))) if {
	stage_destination_passed
	count(purpose_active) == 0
	what := sprintf("purpose %s", [event_purpose])
	code := explain(purpose_named, purpose_items, "PURPOSE_NOT_CONSENTED")
}

# Stage 3: the recipient; a consent that lists recipients covers only those.
recipient_needed := input.event.data.recipient if input.event.type == "privacy.data.shared"

recipient_needed := input.event.data.recipient if input.event.type == "privacy.data.transferred"

covers_recipient(c) if recipient_needed in c.recipients

covers_recipient(c) if not c.recipients[0]

covers_recipient(_) if not recipient_needed

recipient_named contains i if {
	some i in purpose_named
	covers_recipient(consents[i])
}

recipient_active contains i if {
	some i in purpose_active
	covers_recipient(consents[i])
}

consent_gap contains reason(code, gap_message(code, what, sprintf("no consent covers %s", [what]))) if {
	count(purpose_active) > 0
	count(recipient_active) == 0
	what := sprintf("recipient %s for purpose %s", [recipient_needed, event_purpose])
	code := explain(recipient_named, purpose_items, "RECIPIENT_NOT_CONSENTED")
}

# Stage 4: each category. Cookie categories are governed by the cookie rule.
uncovered_categories contains k if {
	count(recipient_active) > 0
	some k in input.event.data.categories
	not startswith(k, "cookie.")
	not category_covered(k)
}

category_covered(k) if {
	some i in recipient_active
	k in consents[i].categories
	not scope_withdrawn(consents[i], "categories", k)
}

consent_gap contains reason(code, gap_message(code, what, sprintf("no consent covers %s", [what]))) if {
	some k in uncovered_categories
	ids := {i | some i in recipient_named; k in consents[i].categories}
	code := explain(ids, object.union(purpose_items, {"categories": [k]}), "CATEGORY_NOT_CONSENTED")
	what := sprintf("category %s for purpose %s", [k, event_purpose])
}

# Minors: the consent relied on must have been given with a guardian.
guardian_among(ids) if {
	some i in ids
	consents[i].guardian == true
}

deny contains reason("GUARDIAN_CONSENT_REQUIRED", "the consent relied on for a subject under the guardian age was not given with a guardian") if {
	consent_required
	minor
	count(recipient_active) > 0
	not guardian_among(recipient_active)
}

# Cookies outside the necessary ones need a consent listing the cookie class.
cookie_checked if input.event.type == "privacy.data.collected"

cookie_checked if input.event.type == "privacy.data.used"

cookie_checked if {
	input.event.type == "privacy.data.shared"
	not event_data.basis == "anonymized"
}

cookie_checked if {
	input.event.type == "privacy.data.transferred"
	xborder_dest
}

cookie_covered(k) if {
	some c in consents
	k in c.cookies
	not scope_withdrawn(c, "cookies", k)
	in_force(c)
}

deny contains reason(code, gap_message(code, what, sprintf("no consent allows %s", [what]))) if {
	some k in input.event.data.categories
	startswith(k, "cookie.")
	not k in object.get(data.custos.config, "necessary_cookies", [])
	cookie_checked
	not cookie_covered(k)
	ids := {i | some i, c in consents; k in c.cookies}
	code := explain(ids, {"cookies": [k]}, "COOKIE_CONSENT_REQUIRED")
	what := sprintf("cookies of class %s", [k])
}
