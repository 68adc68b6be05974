package io.opendms.dms;

import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Starts one dmsd for the whole test run, on first use, and stops it when the run ends (the
 * root context's store closes it).
 */
final class DmsServerExtension implements BeforeAllCallback {
  private static final ExtensionContext.Namespace NS =
      ExtensionContext.Namespace.create(DmsServerExtension.class);

  @Override
  public void beforeAll(ExtensionContext context) {
    DmsTestBase.server =
        context
            .getRoot()
            .getStore(NS)
            .getOrComputeIfAbsent(
                "dmsd",
                key -> {
                  try {
                    return DmsServer.start();
                  } catch (Exception e) {
                    throw new IllegalStateException("starting dmsd: " + e.getMessage(), e);
                  }
                },
                DmsServer.class);
  }
}
