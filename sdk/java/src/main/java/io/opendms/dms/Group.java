package io.opendms.dms;

import io.opendms.dms.v1.ConsumerGroup;
import java.time.Instant;

/**
 * A consumer group as the server describes it.
 *
 * @param name the resource name, {@code projects/{project}/queues/{queue id}/groups/{id}}
 * @param id the id assigned at creation: {@code g-} followed by a UUID
 * @param displayName the name given at creation
 * @param createTime when the group was created
 * @param stats the group's consumption counts (zero in the answer of a create)
 * @param tagFilter the group's tag filter, once a receive set it; null before
 */
public record Group(
    String name,
    String id,
    String displayName,
    Instant createTime,
    GroupStats stats,
    TagFilter tagFilter) {
  static Group fromProto(ConsumerGroup g) {
    return new Group(
        g.getName(),
        g.getId(),
        g.getDisplayName(),
        Protos.instant(g.hasCreateTime(), g.getCreateTime()),
        GroupStats.fromProto(g.getStats()),
        g.hasTagFilter() ? TagFilter.fromProto(g.getTagFilter()) : null);
  }
}
