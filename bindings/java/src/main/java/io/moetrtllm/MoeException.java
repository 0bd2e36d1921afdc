package io.moetrtllm;

/** A failed library call: the status code and the library's message (unchecked). */
public class MoeException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final int status;
  private final String libraryMessage;

  public MoeException(int status, String message) {
    super(message + " [" + Moe.statusName(status) + " (" + status + ")]");
    this.status = status;
    this.libraryMessage = message;
  }

  /** The status code (Moe.STATUS_*). */
  public int status() {
    return status;
  }

  /** The status name, e.g. "INVALID_ARGUMENT". */
  public String statusName() {
    return Moe.statusName(status);
  }

  /** The library's message (moe_get_last_error of the failing call). */
  public String libraryMessage() {
    return libraryMessage;
  }
}
