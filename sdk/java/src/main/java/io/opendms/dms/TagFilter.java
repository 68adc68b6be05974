package io.opendms.dms;

import io.opendms.dms.v1.TagMatch;
import java.util.List;
import java.util.Objects;

/**
 * Selects messages by their tags. A consumer group keeps one filter: the first receive that
 * gives one sets it; later receives may repeat it or give none, and a different one fails with
 * reason {@code TAG_FILTER_CONFLICT}.
 *
 * @param tags one to three tags
 * @param match whether a message needs any or all of them
 */
public record TagFilter(List<String> tags, Match match) {
  /** How a filter matches a message's tags. */
  public enum Match {
    /** At least one of the tags. */
    ANY,
    /** Every one of the tags. */
    ALL
  }

  public TagFilter {
    tags = List.copyOf(tags);
    Objects.requireNonNull(match, "match");
  }

  /** A filter matching messages that have at least one of {@code tags}. */
  public static TagFilter any(String... tags) {
    return new TagFilter(List.of(tags), Match.ANY);
  }

  /** A filter matching messages that have all of {@code tags}. */
  public static TagFilter all(String... tags) {
    return new TagFilter(List.of(tags), Match.ALL);
  }

  io.opendms.dms.v1.TagFilter toProto() {
    return io.opendms.dms.v1.TagFilter.newBuilder()
        .addAllTags(tags)
        .setMatch(
            match == Match.ALL
                ? TagMatch.TAG_MATCH_ALL
                : TagMatch.TAG_MATCH_ANY)
        .build();
  }

  /** The filter of {@code f}, or null when it has no tags (a group without a filter). */
  static TagFilter fromProto(io.opendms.dms.v1.TagFilter f) {
    if (f.getTagsCount() == 0) {
      return null;
    }
    return new TagFilter(
        f.getTagsList(),
        f.getMatch() == TagMatch.TAG_MATCH_ALL ? Match.ALL : Match.ANY);
  }
}
