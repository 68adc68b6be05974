package dms

// WithListPageSize sets how many queues ListQueues asks for per call, so
// that tests can see it page.
func WithListPageSize(n int32) Option {
	return func(o *clientOptions) { o.listPageSize = n }
}

// RangeAcksSent returns how many offset ranges a subscription acked.
func RangeAcksSent(s *Subscription) int64 { return s.rangesSent.Load() }
