package delivery

import (
	"slices"
	"sort"
)

// offsetSet is a set of offsets kept as sorted, disjoint, non-adjacent
// ranges, so that acks that arrive out of order cost memory per gap, not per
// message: a million acks behind one stuck message are one range.
type offsetSet struct {
	ranges []offsetRange // sorted by first; gaps of at least one between ranges
	count  int64
}

// offsetRange holds first to last inclusive.
type offsetRange struct{ first, last int64 }

// find returns the index of the first range whose last is ≥ o.
func (s *offsetSet) find(o int64) int {
	return sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].last >= o })
}

func (s *offsetSet) contains(o int64) bool {
	i := s.find(o)
	return i < len(s.ranges) && s.ranges[i].first <= o
}

func (s *offsetSet) len() int64 { return s.count }

// add inserts o, merging with neighbouring ranges.
func (s *offsetSet) add(o int64) {
	i := s.find(o)
	if i < len(s.ranges) && s.ranges[i].first <= o {
		return
	}
	s.count++
	joinsNext := i < len(s.ranges) && s.ranges[i].first == o+1
	joinsPrev := i > 0 && s.ranges[i-1].last == o-1
	switch {
	case joinsPrev && joinsNext:
		s.ranges[i-1].last = s.ranges[i].last
		s.ranges = append(s.ranges[:i], s.ranges[i+1:]...)
	case joinsPrev:
		s.ranges[i-1].last = o
	case joinsNext:
		s.ranges[i].first = o
	default:
		s.ranges = append(s.ranges, offsetRange{})
		copy(s.ranges[i+1:], s.ranges[i:])
		s.ranges[i] = offsetRange{o, o}
	}
}

// addRange inserts first to last (first <= last, both in [0, MaxInt64)),
// merging with the ranges it overlaps or touches: a lost range of a million
// offsets costs one range and no loop over its offsets.
func (s *offsetSet) addRange(first, last int64) {
	if last < first {
		return
	}
	i := s.find(first - 1) // the first range that overlaps or touches
	j := i
	var covered int64
	for j < len(s.ranges) && s.ranges[j].first <= last+1 {
		first, last = min(first, s.ranges[j].first), max(last, s.ranges[j].last)
		covered += s.ranges[j].last - s.ranges[j].first + 1
		j++
	}
	s.ranges = slices.Replace(s.ranges, i, j, offsetRange{first, last})
	s.count += last - first + 1 - covered
}

// remove deletes o, splitting its range if needed.
func (s *offsetSet) remove(o int64) {
	i := s.find(o)
	if i >= len(s.ranges) || s.ranges[i].first > o {
		return
	}
	s.count--
	r := s.ranges[i]
	switch {
	case r.first == o && r.last == o:
		s.ranges = append(s.ranges[:i], s.ranges[i+1:]...)
	case r.first == o:
		s.ranges[i].first++
	case r.last == o:
		s.ranges[i].last--
	default:
		s.ranges = append(s.ranges, offsetRange{})
		copy(s.ranges[i+2:], s.ranges[i+1:])
		s.ranges[i] = offsetRange{r.first, o - 1}
		s.ranges[i+1] = offsetRange{o + 1, r.last}
	}
}

// takeFrom removes and returns the range that starts exactly at o, if any:
// how an ack floor jumps over everything acked right after it.
func (s *offsetSet) takeFrom(o int64) (last int64, ok bool) {
	if len(s.ranges) == 0 || s.ranges[0].first != o {
		return 0, false
	}
	r := s.ranges[0]
	s.ranges = s.ranges[1:]
	s.count -= r.last - r.first + 1
	return r.last, true
}

// dropBelow removes every offset below o.
func (s *offsetSet) dropBelow(o int64) {
	for len(s.ranges) > 0 && s.ranges[0].first < o {
		r := &s.ranges[0]
		if r.last < o {
			s.count -= r.last - r.first + 1
			s.ranges = s.ranges[1:]
			continue
		}
		s.count -= o - r.first
		r.first = o
	}
}

// countIn returns how many offsets lie in [from, to).
func (s *offsetSet) countIn(from, to int64) int64 {
	var n int64
	for _, r := range s.ranges[s.find(from):] {
		if r.first >= to {
			break
		}
		n += min(r.last, to-1) - max(r.first, from) + 1
	}
	return n
}

// each calls fn for every offset; for snapshots and tests.
func (s *offsetSet) each(fn func(int64)) {
	for _, r := range s.ranges {
		for o := r.first; o <= r.last; o++ {
			fn(o)
		}
	}
}
