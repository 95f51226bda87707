package ledger

import (
	"context"
	"fmt"

	"custos.dev/ledger/consentrecord"
	"custos.dev/ledger/event"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// ConsentRecords renders the subject's consents as ISO/IEC TS 27560 consent
// records (package consentrecord), from the subject's records and the
// published notices on the ledger.
func (l *Ledger) ConsentRecords(ctx context.Context, p string) (consentrecord.Document, error) {
	in := consentrecord.Input{Pseudonym: p, Now: l.now()}
	s := state.NewSubject(p)
	err := l.subjectRecords(ctx, p, func(seq uint64, r *record.Record) error {
		in.Entries = append(in.Entries, consentrecord.Entry{Seq: seq, Record: r})
		return s.Apply(seq, r)
	})
	if err != nil {
		return consentrecord.Document{}, err
	}
	in.Residence = s.Residence
	if set := l.Policy().Active(); set != nil {
		in.Law = set.Jurisdiction(s.Residence)
	}
	err = NewReader(l.js).Replay(ctx, Filter{Type: "privacy.notice.published"}, func(e Entry) error {
		r, err := e.Parse()
		if err != nil {
			return fmt.Errorf("%w: sequence %d: %v", ErrIntegrity, e.Seq, err)
		}
		var d event.NoticePublished
		if err := r.DecodeData(&d); err != nil {
			return fmt.Errorf("%w: sequence %d: %v", ErrIntegrity, e.Seq, err)
		}
		in.Notices = append(in.Notices, consentrecord.Notice{Version: d.Version, Effective: d.Effective,
			Language: d.Language, Controller: d.Controller, Seq: e.Seq})
		return nil
	})
	if err != nil {
		return consentrecord.Document{}, err
	}
	return consentrecord.Build(in), nil
}
