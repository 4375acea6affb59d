// A tiny long-running Java program: the JVM in kubesim's demo cluster, so that jstack, jmap and
// jcmd have a real process to attach to. Launched as a single-file source program
// (`java DemoApp.java`), so no build step is needed.
import java.util.ArrayList;
import java.util.List;

public class DemoApp {
  public static void main(String[] args) throws InterruptedException {
    List<byte[]> cache = new ArrayList<>();
    Thread worker = new Thread(() -> {
      while (true) {
        synchronized (cache) {
          cache.add(new byte[64 * 1024]);
          if (cache.size() > 64) {
            cache.clear();
          }
        }
        try {
          Thread.sleep(500);
        } catch (InterruptedException e) {
          return;
        }
      }
    }, "demo-worker");
    worker.setDaemon(true);
    worker.start();
    System.out.println("demo app started");
    while (true) {
      Thread.sleep(60_000);
    }
  }
}
