package io.opendms.dms;

import io.opendms.dms.v1.AckDeadLettersRequest;
import io.opendms.dms.v1.AckMessagesRequest;
import io.opendms.dms.v1.ChangeVisibilityRequest;
import io.opendms.dms.v1.ConsumerGroup;
import io.opendms.dms.v1.CreateConsumerGroupRequest;
import io.opendms.dms.v1.CreateQueueRequest;
import io.opendms.dms.v1.DeleteConsumerGroupRequest;
import io.opendms.dms.v1.DeleteQueueRequest;
import io.opendms.dms.v1.GetConsumerGroupRequest;
import io.opendms.dms.v1.GetQueueRequest;
import io.opendms.dms.v1.ListConsumerGroupsRequest;
import io.opendms.dms.v1.ListQueuesRequest;
import io.opendms.dms.v1.ListQueuesResponse;
import io.opendms.dms.v1.PartitionOffset;
import io.opendms.dms.v1.PartitionOffsets;
import io.opendms.dms.v1.ReceiveDeadLettersRequest;
import io.opendms.dms.v1.ReceiveMessagesRequest;
import io.opendms.dms.v1.RedriveDeadLettersRequest;
import io.opendms.dms.v1.SeekConsumerGroupRequest;
import io.opendms.dms.v1.SeekPosition;
import io.opendms.dms.v1.SendMessagesRequest;
import io.opendms.dms.v1.SendMessagesResponse;
import io.grpc.stub.AbstractStub;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * A project of a {@link DmsClient}: it manages the project's queues and consumer groups, sends
 * messages to its queues and receives them for its consumer groups. Wherever a method takes a
 * queue or a group, it may be named by its display name or by its id.
 *
 * <p>Every call has the client's call timeout as its deadline and throws {@link DmsException}
 * when it fails.
 */
public final class Project {
  private final DmsClient client;
  private final String id;

  Project(DmsClient client, String id) {
    this.client = client;
    this.id = id;
  }

  /** The project id. */
  public String id() {
    return id;
  }

  DmsClient client() {
    return client;
  }

  String resource() {
    return "projects/" + id;
  }

  String queueResource(String queue) {
    return resource() + "/queues/" + Objects.requireNonNull(queue, "queue");
  }

  String groupResource(String queue, String group) {
    return queueResource(queue) + "/groups/" + Objects.requireNonNull(group, "group");
  }

  <S extends AbstractStub<S>> S withDeadline(S stub, Duration extra) {
    return stub.withDeadlineAfter(client.callTimeout.plus(extra).toNanos(), TimeUnit.NANOSECONDS);
  }

  static <T> T call(Supplier<T> rpc) {
    try {
      return rpc.get();
    } catch (RuntimeException e) {
      throw DmsException.from(e);
    }
  }

  // ---- Queues and groups ----

  /** Creates a queue in the project. */
  public Queue createQueue(QueueConfig config) {
    var req =
        CreateQueueRequest.newBuilder()
            .setParent(resource())
            .setQueue(config.toProto())
            .build();
    return Queue.fromProto(
        call(() -> withDeadline(client.queues, Duration.ZERO).createQueue(req)).getQueue());
  }

  /** Returns a queue with its current counts. */
  public Queue getQueue(String queue) {
    var req = GetQueueRequest.newBuilder().setName(queueResource(queue)).build();
    return Queue.fromProto(
        call(() -> withDeadline(client.queues, Duration.ZERO).getQueue(req)).getQueue());
  }

  /** Returns every queue of the project, oldest first, fetching them page by page. */
  public List<Queue> listQueues() {
    List<Queue> out = new ArrayList<>();
    String token = "";
    do {
      var req =
          ListQueuesRequest.newBuilder()
              .setParent(resource())
              .setPageSize(client.listPageSize)
              .setPageToken(token)
              .build();
      ListQueuesResponse resp =
          call(() -> withDeadline(client.queues, Duration.ZERO).listQueues(req));
      resp.getQueuesList().forEach(q -> out.add(Queue.fromProto(q)));
      token = resp.getNextPageToken();
    } while (!token.isEmpty());
    return Collections.unmodifiableList(out);
  }

  /** Deletes a queue with its consumer groups and messages. It cannot be undone. */
  public void deleteQueue(String queue) {
    var req =
        DeleteQueueRequest.newBuilder().setName(queueResource(queue)).build();
    call(() -> withDeadline(client.queues, Duration.ZERO).deleteQueue(req));
  }

  /**
   * Creates a consumer group named {@code name} (1 to 32 characters of {@code [A-Za-z0-9_-]})
   * on a queue. A new group starts at the earliest retained message of the queue.
   */
  public Group createGroup(String queue, String name) {
    var req =
        CreateConsumerGroupRequest.newBuilder()
            .setParent(queueResource(queue))
            .setGroup(ConsumerGroup.newBuilder().setDisplayName(name))
            .build();
    return Group.fromProto(
        call(() -> withDeadline(client.queues, Duration.ZERO).createConsumerGroup(req))
            .getGroup());
  }

  /** Returns a consumer group with its counts. */
  public Group getGroup(String queue, String group) {
    var req =
        GetConsumerGroupRequest.newBuilder()
            .setName(groupResource(queue, group))
            .build();
    return Group.fromProto(
        call(() -> withDeadline(client.queues, Duration.ZERO).getConsumerGroup(req)).getGroup());
  }

  /** Returns the counts of a consumer group: {@code getGroup(queue, group).stats()}. */
  public GroupStats groupStats(String queue, String group) {
    return getGroup(queue, group).stats();
  }

  /** Returns the consumer groups of a queue with their counts, oldest first. */
  public List<Group> listGroups(String queue) {
    var req =
        ListConsumerGroupsRequest.newBuilder()
            .setParent(queueResource(queue))
            .build();
    return call(() -> withDeadline(client.queues, Duration.ZERO).listConsumerGroups(req))
        .getGroupsList()
        .stream()
        .map(Group::fromProto)
        .toList();
  }

  /** Deletes a consumer group and its consumption state. */
  public void deleteGroup(String queue, String group) {
    var req =
        DeleteConsumerGroupRequest.newBuilder()
            .setName(groupResource(queue, group))
            .build();
    call(() -> withDeadline(client.queues, Duration.ZERO).deleteConsumerGroup(req));
  }

  // ---- Seeking ----

  /**
   * Moves a group, in every partition, to the first message stored at or after {@code time}.
   * Messages from there on are delivered again even if they were acked.
   *
   * @return the new position (offset) of every partition
   */
  public Map<Integer, Long> seekToTime(String queue, String group, Instant time) {
    return seek(queue, group, b -> b.setTime(Protos.timestamp(time)));
  }

  /** Moves a group to the earliest retained message of every partition. */
  public Map<Integer, Long> seekToEarliest(String queue, String group) {
    return seek(queue, group, b -> b.setPosition(SeekPosition.SEEK_POSITION_EARLIEST));
  }

  /** Moves a group past the last message stored so far, in every partition. */
  public Map<Integer, Long> seekToLatest(String queue, String group) {
    return seek(queue, group, b -> b.setPosition(SeekPosition.SEEK_POSITION_LATEST));
  }

  /**
   * Moves a group to explicit offsets, partition to offset; partitions not named keep their
   * position.
   */
  public Map<Integer, Long> seekToOffsets(String queue, String group, Map<Integer, Long> offsets) {
    PartitionOffsets.Builder po = PartitionOffsets.newBuilder();
    offsets.forEach(
        (p, o) -> po.addOffsets(PartitionOffset.newBuilder().setPartition(p).setOffset(o)));
    return seek(queue, group, b -> b.setOffsets(po));
  }

  private Map<Integer, Long> seek(
      String queue,
      String group,
      Function<SeekConsumerGroupRequest.Builder, SeekConsumerGroupRequest.Builder> target) {
    var req =
        target.apply(SeekConsumerGroupRequest.newBuilder().setGroup(groupResource(queue, group)))
            .build();
    var resp = call(() -> withDeadline(client.consumer, Duration.ZERO).seekConsumerGroup(req));
    Map<Integer, Long> out = new TreeMap<>();
    resp.getPositionsList().forEach(p -> out.put(p.getPartition(), p.getOffset()));
    return Collections.unmodifiableMap(out);
  }

  // ---- Sending ----

  /**
   * Stores messages in a queue with one call and returns one result per message, in order. The
   * batch is all or nothing: if any message is invalid nothing is stored and the exception
   * names the offending message. A call carries at most {@link Limits#MAX_BATCH_MESSAGES}
   * messages and {@link Limits#MAX_BATCH_BYTES} bytes; a {@link Producer} splits and coalesces
   * for you. When the call returns, the messages are durable according to the queue's mode.
   *
   * <p>This method does not retry. If it fails with {@code DEADLINE_EXCEEDED} or {@code
   * UNAVAILABLE} the messages may or may not have been stored, and sending them again without
   * an idempotence key can store them twice; see {@link #send(String, List, String)}.
   */
  public List<SendResult> send(String queue, List<Message> messages) {
    return send(queue, messages, "");
  }

  /**
   * {@link #send(String, List)} with an idempotence key: at most 128 bytes, unique per batch
   * of one producer (for example the producer's id and a sequence number). Sending the same
   * batch again with the same key, after a timeout or a lost answer, stores nothing again and
   * returns the first attempt's results, for as long as that attempt is among the last 100000
   * messages of its partition. An empty key sends without one.
   */
  public List<SendResult> send(String queue, List<Message> messages, String idempotenceKey) {
    SendMessagesRequest req =
        sendRequest(queueResource(queue), messages).toBuilder()
            .setIdempotenceKey(Objects.requireNonNull(idempotenceKey, "idempotenceKey"))
            .build();
    SendMessagesResponse resp =
        call(() -> withDeadline(client.producer, Duration.ZERO).sendMessages(req));
    return sendResults(resp);
  }

  /** {@link #send(String, List)} for a few messages. */
  public List<SendResult> send(String queue, Message... messages) {
    return send(queue, List.of(messages));
  }

  static SendMessagesRequest sendRequest(String queueResource, List<Message> messages) {
    SendMessagesRequest.Builder b = SendMessagesRequest.newBuilder().setQueue(queueResource);
    for (Message m : messages) {
      b.addMessages(m.toProto());
    }
    return b.build();
  }

  static List<SendResult> sendResults(SendMessagesResponse resp) {
    return resp.getResultsList().stream()
        .map(
            r ->
                new SendResult(
                    r.getMessageId(),
                    r.getPartition(),
                    r.getOffset(),
                    r.getScheduleId(),
                    Protos.instant(r.hasDeliverTime(), r.getDeliverTime())))
        .toList();
  }

  /**
   * Cancels scheduled messages before they become visible: one result per schedule id, in
   * order. An id that cannot be cancelled says why in its result rather than failing the
   * others; more than 1000 ids take several calls.
   */
  public List<CancelResult> cancelScheduledMessages(String queue, List<String> scheduleIds) {
    String name = queueResource(queue);
    List<CancelResult> out = new java.util.ArrayList<>(scheduleIds.size());
    for (int i = 0; i < scheduleIds.size(); i += Limits.MAX_ACKS) {
      var req =
          io.opendms.dms.v1.CancelScheduledMessagesRequest.newBuilder()
              .setQueue(name)
              .addAllScheduleIds(scheduleIds.subList(i, Math.min(scheduleIds.size(), i + Limits.MAX_ACKS)))
              .build();
      var resp =
          call(() -> withDeadline(client.producer, Duration.ZERO).cancelScheduledMessages(req));
      for (var r : resp.getResultsList()) {
        out.add(
            new CancelResult(
                r.getScheduleId(), r.getCancelled(), r.getErrorReason(), r.getErrorMessage()));
      }
    }
    return out;
  }

  /** {@link #cancelScheduledMessages(String, List)} for a few ids. */
  public List<CancelResult> cancelScheduledMessages(String queue, String... scheduleIds) {
    return cancelScheduledMessages(queue, List.of(scheduleIds));
  }

  /**
   * Moves a scheduled message to {@code delay} from now (0 to 7 days; zero releases it at
   * once) and returns its new schedule id; the old one is no longer valid.
   */
  public RescheduleResult rescheduleMessage(String queue, String scheduleId, Duration delay) {
    return reschedule(queue, scheduleId, b -> b.setDelay(Protos.duration(delay)));
  }

  /**
   * Moves a scheduled message to {@code time}, at most 7 days ahead (a past time releases it
   * at once), and returns its new schedule id.
   */
  public RescheduleResult rescheduleMessage(String queue, String scheduleId, Instant time) {
    return reschedule(queue, scheduleId, b -> b.setDeliverTime(Protos.timestamp(time)));
  }

  private RescheduleResult reschedule(
      String queue,
      String scheduleId,
      java.util.function.Consumer<io.opendms.dms.v1.RescheduleMessageRequest.Builder> when) {
    var b =
        io.opendms.dms.v1.RescheduleMessageRequest.newBuilder()
            .setQueue(queueResource(queue))
            .setScheduleId(Objects.requireNonNull(scheduleId, "scheduleId"));
    when.accept(b);
    var req = b.build();
    var resp = call(() -> withDeadline(client.producer, Duration.ZERO).rescheduleMessage(req));
    return new RescheduleResult(
        resp.getScheduleId(),
        resp.getMessageId(),
        Protos.instant(resp.hasDeliverTime(), resp.getDeliverTime()));
  }

  /** Returns a batching producer for a queue with the default options. */
  public Producer newProducer(String queue) {
    return newProducer(queue, ProducerOptions.defaults());
  }

  /** Returns a batching producer for a queue. Close it to send what it buffers. */
  public Producer newProducer(String queue, ProducerOptions options) {
    return new Producer(this, queueResource(queue), options);
  }

  // ---- Receiving ----

  /**
   * Returns messages of a consumer group, waiting up to the options' wait time for the first.
   * Each must be settled with {@link #ack} before its visibility timeout passes, or the group
   * gets it again. An empty list means none became available in time.
   *
   * <p>If the call fails after the server picked the messages (a lost response), those stay
   * invisible until their visibility timeout passes: delivery is at least once.
   */
  public List<ReceivedMessage> receive(String queue, String group, ReceiveOptions options) {
    ReceiveMessagesRequest req = receiveRequest(groupResource(queue, group), options);
    Instant start = Instant.now();
    var resp =
        call(() -> withDeadline(client.consumer, options.waitTime).receiveMessages(req));
    return received(resp.getMessagesList(), start, options);
  }

  static ReceiveMessagesRequest receiveRequest(String groupResource, ReceiveOptions o) {
    ReceiveMessagesRequest.Builder b =
        ReceiveMessagesRequest.newBuilder()
            .setGroup(groupResource)
            .setMaxMessages(o.maxMessages)
            .setConsumerId(o.consumerId);
    if (!o.waitTime.isZero()) {
      b.setWaitTime(Protos.duration(o.waitTime));
    }
    if (o.visibilityTimeout != null) {
      b.setVisibilityTimeout(Protos.duration(o.visibilityTimeout));
    }
    if (o.tagFilter != null) {
      b.setTagFilter(o.tagFilter.toProto());
    }
    if (o.broadcast != null) {
      b.setBroadcast(o.broadcast.toProto());
    }
    return b.build();
  }

  static List<ReceivedMessage> received(
      List<io.opendms.dms.v1.ReceivedMessage> msgs, Instant start, ReceiveOptions o) {
    // The server starts the visibility timeout once it has the messages, after this client's
    // start, so the estimate errs on the safe side.
    Instant visibleAt = start.plus(o.effectiveVisibilityTimeout());
    return msgs.stream().map(m -> ReceivedMessage.fromProto(m, visibleAt)).toList();
  }

  /**
   * Settles deliveries of a consumer group and returns one result per ack, in order. An ack
   * that could not be applied (for example because its handle expired) is reported in its
   * result with its reason, not thrown. More than {@link Limits#MAX_ACKS} acks are sent in
   * several calls.
   */
  public List<AckResult> ack(String queue, String group, List<Ack> acks) {
    return ackChunks(
        acks,
        chunk -> {
          AckMessagesRequest.Builder b =
              AckMessagesRequest.newBuilder().setGroup(groupResource(queue, group));
          chunk.forEach(a -> b.addAcks(a.toProto()));
          return call(() -> withDeadline(client.consumer, Duration.ZERO).ackMessages(b.build()))
              .getResultsList();
        });
  }

  /** {@link #ack(String, String, List)} for a few acks. */
  public List<AckResult> ack(String queue, String group, Ack... acks) {
    return ack(queue, group, List.of(acks));
  }

  /**
   * Gives in-flight deliveries of a consumer group a new visibility timeout, counted from now,
   * and returns one result per handle, in order: a receiver whose work takes longer than it
   * expected keeps its messages invisible to the group for longer. The receipt handles stay
   * valid for the acks that settle the deliveries. {@code visibilityTimeout} is 15 to 300 s;
   * the server rejects the call otherwise ({@code VISIBILITY_TIMEOUT_INVALID}). A new timeout
   * may also be shorter than what is left of the current one.
   *
   * <p>A handle that could not be extended is reported in its result with its reason, not
   * thrown: {@code RECEIPT_HANDLE_EXPIRED} when the delivery is no longer in flight (it was
   * settled, or its visibility timeout passed), {@code RECEIPT_HANDLE_INVALID} when the handle
   * was not issued by the server. More than {@link Limits#MAX_ACKS} handles are sent in several
   * calls. Messages only: dead letters cannot be extended.
   *
   * <p>The message's {@link ReceivedMessage#visibleAt()} is not updated. A {@link Consumer}
   * extends the visibility of its handlers' messages itself (see {@link
   * ConsumerOptions.Builder#extendVisibility(boolean)}).
   *
   * @param receiptHandles the handles of the deliveries ({@link ReceivedMessage#receiptHandle()})
   */
  public List<AckResult> changeVisibility(
      String queue, String group, List<String> receiptHandles, Duration visibilityTimeout) {
    String groupResource = groupResource(queue, group);
    var timeout = Protos.duration(Objects.requireNonNull(visibilityTimeout, "visibilityTimeout"));
    List<AckResult> out = new ArrayList<>(receiptHandles.size());
    for (int i = 0; i < receiptHandles.size(); i += Limits.MAX_ACKS) {
      var req =
          ChangeVisibilityRequest.newBuilder()
              .setGroup(groupResource)
              .addAllReceiptHandles(
                  receiptHandles.subList(i, Math.min(receiptHandles.size(), i + Limits.MAX_ACKS)))
              .setVisibilityTimeout(timeout)
              .build();
      call(() -> withDeadline(client.consumer, Duration.ZERO).changeVisibility(req))
          .getResultsList()
          .forEach(r -> out.add(AckResult.fromProto(r)));
    }
    return Collections.unmodifiableList(out);
  }

  /**
   * {@link #changeVisibility(String, String, List, Duration)} for received messages: one result
   * per message, in order. (A list of them: {@code messages.toArray(ReceivedMessage[]::new)}.)
   */
  public List<AckResult> changeVisibility(
      String queue, String group, Duration visibilityTimeout, ReceivedMessage... messages) {
    return changeVisibility(
        queue,
        group,
        Arrays.stream(messages).map(ReceivedMessage::receiptHandle).toList(),
        visibilityTimeout);
  }

  private static List<AckResult> ackChunks(
      List<Ack> acks, Function<List<Ack>, List<io.opendms.dms.v1.AckResult>> send) {
    List<AckResult> out = new ArrayList<>(acks.size());
    for (int i = 0; i < acks.size(); i += Limits.MAX_ACKS) {
      List<Ack> chunk = acks.subList(i, Math.min(acks.size(), i + Limits.MAX_ACKS));
      send.apply(chunk).forEach(r -> out.add(AckResult.fromProto(r)));
    }
    return Collections.unmodifiableList(out);
  }

  /**
   * Returns a running consumer: it receives the group's messages in a loop and hands each to
   * {@code handler}. Close it to stop.
   */
  public Consumer newConsumer(String queue, String group, MessageHandler handler) {
    return newConsumer(queue, group, handler, ConsumerOptions.defaults());
  }

  /** {@link #newConsumer(String, String, MessageHandler)} with options. */
  public Consumer newConsumer(
      String queue, String group, MessageHandler handler, ConsumerOptions options) {
    return new Consumer(this, queue, group, handler, options);
  }

  /**
   * Opens a streaming subscription to a consumer group (the {@code Subscribe} RPC): the server
   * pushes messages while this client has credits, the handler's outcomes are acked on the
   * same stream in batches, and credits are granted back as messages are handled. Close it to
   * stop.
   */
  public Subscription subscribe(
      String queue, String group, MessageHandler handler, SubscribeOptions options) {
    return new Subscription(this, queue, group, handler, options);
  }

  /** {@link #subscribe(String, String, MessageHandler, SubscribeOptions)} with defaults. */
  public Subscription subscribe(String queue, String group, MessageHandler handler) {
    return subscribe(queue, group, handler, SubscribeOptions.defaults());
  }

  // ---- Dead letters ----

  /**
   * Returns dead letters of a consumer group: messages that failed the queue's max consume
   * count. They are received, hidden and acknowledged like messages (each carries its {@link
   * ReceivedMessage#deadLetter()}); an acknowledged dead letter is gone. Only the options' max
   * messages, wait time and visibility timeout apply.
   */
  public List<ReceivedMessage> receiveDeadLetters(
      String queue, String group, ReceiveOptions options) {
    if (options.tagFilter != null || options.broadcast != null || !options.consumerId.isEmpty()) {
      throw new IllegalArgumentException(
          "receiveDeadLetters takes no tag filter, broadcast options or consumer id");
    }
    ReceiveDeadLettersRequest.Builder b =
        ReceiveDeadLettersRequest.newBuilder()
            .setGroup(groupResource(queue, group))
            .setMaxMessages(options.maxMessages);
    if (!options.waitTime.isZero()) {
      b.setWaitTime(Protos.duration(options.waitTime));
    }
    if (options.visibilityTimeout != null) {
      b.setVisibilityTimeout(Protos.duration(options.visibilityTimeout));
    }
    Instant start = Instant.now();
    var resp =
        call(() -> withDeadline(client.consumer, options.waitTime).receiveDeadLetters(b.build()));
    return received(resp.getMessagesList(), start, options);
  }

  /**
   * Settles received dead letters; {@link AckStatus#REDELIVER} is not accepted. One result per
   * ack, in order.
   */
  public List<AckResult> ackDeadLetters(String queue, String group, List<Ack> acks) {
    return ackChunks(
        acks,
        chunk -> {
          AckDeadLettersRequest.Builder b =
              AckDeadLettersRequest.newBuilder().setGroup(groupResource(queue, group));
          chunk.forEach(a -> b.addAcks(a.toProto()));
          return call(
                  () -> withDeadline(client.consumer, Duration.ZERO).ackDeadLetters(b.build()))
              .getResultsList();
        });
  }

  /** {@link #ackDeadLetters(String, String, List)} for a few acks. */
  public List<AckResult> ackDeadLetters(String queue, String group, Ack... acks) {
    return ackDeadLetters(queue, group, List.of(acks));
  }

  /**
   * Gives dead letters back to their consumer group: each chosen dead letter leaves the
   * dead-letter queue and its message becomes available to the group again with a fresh
   * delivery count. Other groups are not affected. Returns one result per dead letter
   * considered, in dead-letter order; those in flight as dead letters are not considered.
   */
  public List<RedriveResult> redriveDeadLetters(
      String queue, String group, RedriveOptions options) {
    RedriveDeadLettersRequest.Builder b =
        RedriveDeadLettersRequest.newBuilder()
            .setGroup(groupResource(queue, group))
            .addAllMessageIds(options.messageIds)
            .setMaxPerSecond(options.maxPerSecond)
            .setLimit(options.limit);
    if (options.tagFilter != null) {
      b.setTagFilter(options.tagFilter.toProto());
    }
    // The server paces a redrive: give the call the time its pace needs on top.
    int limit = options.limit > 0 ? options.limit : 1000;
    int perSecond = options.maxPerSecond > 0 ? options.maxPerSecond : 1000;
    Duration pace = Duration.ofSeconds((limit + perSecond - 1) / perSecond);
    return call(() -> withDeadline(client.consumer, pace).redriveDeadLetters(b.build()))
        .getResultsList()
        .stream()
        .map(RedriveResult::fromProto)
        .toList();
  }
}
