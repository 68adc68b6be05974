// Package kafka is the Kafka protocol front end: a listener that speaks
// the Kafka wire protocol to unchanged Kafka clients and translates each
// request into calls of the roles (storage through its routed client, the
// metadata role's QueueService, the catalog and placement caches), keeping
// no data of its own. Any node serves any topic: what a partition's leader
// must do is forwarded to it.
//
// The codec is franz-go's kmsg: requests are decoded and responses encoded
// by it at every version. Each API lives in a file named after its key
// (00_produce.go, 03_metadata.go, ...) whose header lists the versions
// served and how the API maps onto DMS; the file registers its handler
// with one register call, and ApiVersions advertises exactly the
// registered versions. A connection's requests are read ahead (clients
// pipeline) but served one at a time and answered in order, as Kafka does.
//
// Topics are the KAFKA_HA and KAFKA_HT queues of the connection's project
// (-protocols.default-project while authentication is off; the project its
// SASL user name names with authentication on, sasl.go), by display name;
// a topic's id is its queue's id. With authentication on every request is
// authorized by services/authz from one table (access.go).
//
// The data path keeps one copy of the data, in storage: a producer's
// record batch is appended as a Kafka-format batch, byte for byte, and
// Fetch serves stored batches back as bytes; batches written through the
// DMS APIs are encoded as Kafka batches when read (records.go), and
// services/recordfmt decodes Kafka batches into messages for DMS consumer
// groups, so that both kinds of consumer read one log. Beside the API
// files: records.go (stored batches as Kafka batches), partitions.go
// (leader epoch checks), topicconfig.go (the configs a topic reports and
// takes), producerids.go (producer ids from etcd).
package kafka
