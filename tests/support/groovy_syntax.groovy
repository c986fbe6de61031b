/*
 * Check the Groovy syntax of many files in one JVM.
 *
 * Usage: groovy groovy_syntax.groovy FILE...
 *
 * Each file is compiled up to the CONVERSION phase, which parses the source and
 * builds the AST but does not resolve classes, so imports of Jenkins steps and
 * shared libraries need not be on the classpath. The script prints one JSON
 * object per line, in argument order:
 *
 *   {"path": "...", "ok": true, "errors": []}
 *   {"path": "...", "ok": false, "errors": [{"message": "...", "line": 3, "column": 1}]}
 *
 * "line" and "column" are 1-based, or null when the compiler gives no position.
 * It exits 0 when every file compiles, 1 when any file has errors, and 2 on a
 * usage error.
 */

import groovy.json.JsonOutput
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.messages.ExceptionMessage
import org.codehaus.groovy.control.messages.SimpleMessage
import org.codehaus.groovy.control.messages.SyntaxErrorMessage
import org.codehaus.groovy.syntax.SyntaxException

Map describeMessage(Object message) {
    if (message instanceof SyntaxErrorMessage) {
        SyntaxException cause = message.cause
        return [message: cause.originalMessage, line: cause.line, column: cause.startColumn]
    }
    if (message instanceof ExceptionMessage) {
        Exception cause = message.cause
        return [message: cause.toString(), line: null, column: null]
    }
    if (message instanceof SimpleMessage) {
        return [message: message.message, line: null, column: null]
    }
    return [message: message.toString(), line: null, column: null]
}

Map checkFile(String path) {
    File source = new File(path)
    if (!source.isFile()) {
        return [path: path, ok: false, errors: [[message: "file not found: ${path}".toString(), line: null, column: null]]]
    }

    CompilerConfiguration configuration = new CompilerConfiguration()
    configuration.sourceEncoding = 'UTF-8'
    CompilationUnit unit = new CompilationUnit(configuration)
    unit.addSource(source)
    try {
        unit.compile(Phases.CONVERSION)
    } catch (MultipleCompilationErrorsException failure) {
        List errors = failure.errorCollector.errors.collect { describeMessage(it) }
        return [path: path, ok: false, errors: errors]
    }
    return [path: path, ok: true, errors: []]
}

if (args.length == 0) {
    System.err.println('usage: groovy groovy_syntax.groovy FILE...')
    System.exit(2)
}

boolean allOk = true
for (String path : args) {
    Map result
    try {
        result = checkFile(path)
    } catch (Exception unexpected) {
        // Keep checking the remaining files, because one JVM serves the whole batch.
        result = [path: path, ok: false, errors: [[message: "compiler failed: ${unexpected}".toString(), line: null, column: null]]]
    }
    allOk = allOk && result.ok
    println JsonOutput.toJson(result)
}
System.exit(allOk ? 0 : 1)
