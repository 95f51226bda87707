package policy

import "slices"

// IsStorageRegion reports whether region is one of the set's storage
// regions (data.custos.config.storage_regions): data stored or sent there
// has not left the ledger's home jurisdiction.
func (s *Set) IsStorageRegion(region string) bool {
	list, _ := lookup(s.config, "storage_regions").([]any)
	return slices.ContainsFunc(list, func(v any) bool { return v == region })
}
