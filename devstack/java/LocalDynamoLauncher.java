import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;

/**
 * Starts DynamoDB Local on 127.0.0.1 only.
 *
 * <p>The stock jar builds a Jetty {@code Server(port)}, whose connector binds every
 * interface, and offers no option to change that. This launcher builds the server through
 * the jar's own {@code ServerRunner.createServerFromCommandLineArgs}, so every other option
 * keeps its stock meaning, then points the Jetty connector at the loopback address before
 * starting it.
 *
 * <p>Everything is reached by reflection so the launcher compiles against the JDK alone
 * and survives the package rename between DynamoDB Local 1.x/2.x and 3.x.
 *
 * <p>Extra behaviour the devstack relies on:
 * <ul>
 *   <li>{@code -port 0} binds an ephemeral port (the stock parser rejects 0); the bound
 *       port is printed as {@code DEVSTACK_LISTENING host:port} once the server accepts.</li>
 *   <li>The JVM exits when its stdin reaches end-of-file, so a crashed or killed parent
 *       never leaves a server behind.</li>
 * </ul>
 */
public final class LocalDynamoLauncher {
    private static final String HOST = "127.0.0.1";
    private static final String[] RUNNER_CLASSES = {
        "software.amazon.dynamodb.services.local.main.ServerRunner",
        "com.amazonaws.services.dynamodbv2.local.main.ServerRunner",
    };

    private LocalDynamoLauncher() {}

    public static void main(String[] args) throws Exception {
        exitWhenParentGoes();

        int port = 8000;
        List<String> forwarded = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("-port") && i + 1 < args.length) {
                port = Integer.parseInt(args[++i]);
                continue;
            }
            forwarded.add(args[i]);
        }
        // The stock parser insists on 1..65535; the real port is set on the connector below.
        forwarded.add("-port");
        forwarded.add(port == 0 ? "65535" : Integer.toString(port));

        Object proxy = runnerClass()
                .getMethod("createServerFromCommandLineArgs", String[].class)
                .invoke(null, (Object) forwarded.toArray(new String[0]));
        Object jetty = jettyServer(proxy);

        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local built a Jetty server without connectors");
        }
        for (Object connector : connectors) {
            connector.getClass().getMethod("setHost", String.class).invoke(connector, HOST);
            connector.getClass().getMethod("setPort", int.class).invoke(connector, port);
        }

        // DynamoDBProxyServer.start() swallows a bind failure (prints it and stops Jetty),
        // so success is judged from Jetty's own state.
        proxy.getClass().getMethod("start").invoke(proxy);
        boolean started = (Boolean) jetty.getClass().getMethod("isStarted").invoke(jetty);
        if (!started) {
            System.err.println("DEVSTACK_FAILED Jetty did not start on " + HOST + ":" + port);
            System.exit(1);
        }
        int bound = (Integer) connectors[0].getClass().getMethod("getLocalPort").invoke(connectors[0]);
        System.out.println("DEVSTACK_LISTENING " + HOST + ":" + bound);
        System.out.flush();
        proxy.getClass().getMethod("join").invoke(proxy);
    }

    private static Class<?> runnerClass() throws ClassNotFoundException {
        for (String name : RUNNER_CLASSES) {
            try {
                return Class.forName(name);
            } catch (ClassNotFoundException ignored) {
                // try the next known package
            }
        }
        throw new ClassNotFoundException("no DynamoDB Local ServerRunner on the classpath: "
                + String.join(", ", RUNNER_CLASSES));
    }

    private static Object jettyServer(Object proxy) throws IllegalAccessException {
        for (Class<?> c = proxy.getClass(); c != null; c = c.getSuperclass()) {
            for (Field field : c.getDeclaredFields()) {
                if (field.getType().getName().equals("org.eclipse.jetty.server.Server")) {
                    field.setAccessible(true);
                    return field.get(proxy);
                }
            }
        }
        throw new IllegalStateException("no Jetty Server field in " + proxy.getClass().getName());
    }

    private static void exitWhenParentGoes() {
        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() != -1) {
                    // input is ignored; only end-of-file matters
                }
            } catch (java.io.IOException ignored) {
                // a broken stdin means the parent is gone as well
            }
            Runtime.getRuntime().halt(0);
        }, "devstack-parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }
}
