package custos.client;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * A call Custos refused or could not make: keeps the gRPC status code and the
 * daemon's message (which names the rule, keyset or operation involved).
 *
 * <p>An invalid token given to a {@code verify*} method is not an exception: it is a
 * {@link custos.v1.Verify.Verdict} with {@code valid = false} and a reason.
 */
public final class CustosException extends RuntimeException {
  private final Status.Code code;
  private final String rpc;

  CustosException(String rpc, StatusRuntimeException cause) {
    super(rpc + ": " + cause.getStatus().getCode() + ": " + cause.getStatus().getDescription(), cause);
    this.code = cause.getStatus().getCode();
    this.rpc = rpc;
  }

  /** The gRPC status code, e.g. {@code NOT_FOUND} for an unknown keyset. */
  public Status.Code code() {
    return code;
  }

  /** The daemon's message, without the RPC name and code. */
  public String detail() {
    String d = ((StatusRuntimeException) getCause()).getStatus().getDescription();
    return d == null ? "" : d;
  }

  /** The RPC that failed, e.g. {@code SignIdToken}. */
  public String rpc() {
    return rpc;
  }
}
