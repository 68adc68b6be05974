package delivery

import (
	"slices"

	"google.golang.org/protobuf/proto"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/ingest"
)

// normalizeFilter validates a tag filter and returns it in canonical form
// (sorted tags, explicit match), or nil when it selects everything.
func normalizeFilter(f *dmsv1.TagFilter) (*dmsv1.TagFilter, error) {
	if f == nil || len(f.GetTags()) == 0 {
		return nil, nil
	}
	if len(f.GetTags()) > ingest.MaxTags {
		return nil, errs.Wrapf(errs.ErrTagInvalid, "a tag filter has at most %d tags, got %d", ingest.MaxTags, len(f.GetTags()))
	}
	if err := ingest.ValidateTags(f.GetTags()); err != nil {
		return nil, err
	}
	match := f.GetMatch()
	switch match {
	case dmsv1.TagMatch_TAG_MATCH_UNSPECIFIED:
		match = dmsv1.TagMatch_TAG_MATCH_ANY
	case dmsv1.TagMatch_TAG_MATCH_ANY, dmsv1.TagMatch_TAG_MATCH_ALL:
	default:
		return nil, errs.Wrapf(errs.ErrTagFilterConflict, "unknown tag match %d", match)
	}
	tags := slices.Clone(f.GetTags())
	slices.Sort(tags)
	return &dmsv1.TagFilter{Tags: slices.Compact(tags), Match: match}, nil
}

// matches reports whether a message's tags pass the filter.
func matches(f *dmsv1.TagFilter, tags []string) bool {
	if f == nil {
		return true
	}
	for _, want := range f.GetTags() {
		has := slices.Contains(tags, want)
		if has && f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ANY {
			return true
		}
		if !has && f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ALL {
			return false
		}
	}
	return f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ALL
}

func sameFilter(a, b *dmsv1.TagFilter) bool { return proto.Equal(a, b) }
