/*
 * Print the method-call structure of Groovy scripts (Jenkinsfiles, Job DSL scripts) as JSON, in one JVM.
 *
 * Usage: groovy groovy_calls.groovy FILE...
 *
 * Each file is compiled to the CONVERSION phase, like groovy_syntax.groovy, and its top-level statements
 * are turned into plain data, one JSON object per line and per file in argument order:
 *
 *   {"path": "...", "ok": true, "errors": [], "statements": [NODE, ...]}
 *
 * A NODE is one of:
 *   {"call": NAME, "receiver": NODE or null, "args": [NODE...], "named": {KEY: NODE}}   a method call
 *   {"closure": [NODE...]}                                                           a closure's statements
 *   {"const": VALUE}                    a constant (string, number, boolean or null)
 *   {"gstring": TEXT}                   an interpolated string, which homec's outputs must never contain
 *   {"var": NAME}                       a variable
 *   {"property": NAME, "object": NODE}  a property access such as env.X
 *   {"assign": NODE, "value": NODE}     an assignment such as HOMEC_ENV = '...'
 *   {"list": [NODE...]}, {"map": {KEY: NODE}}
 *   {"other": CLASS, "text": TEXT}      anything else
 *
 * Named arguments (name: 'X') go to "named"; their keys are the constant key texts.
 */

import groovy.json.JsonOutput
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.ast.stmt.*
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.Phases

Object describe(Expression expression) {
    if (expression == null) {
        return null
    }
    if (expression instanceof MethodCallExpression) {
        Map node = [call: expression.methodAsString, receiver: null, args: [], named: [:]]
        if (!expression.implicitThis) {
            node.receiver = describe(expression.objectExpression)
        }
        addArguments(node, expression.arguments)
        return node
    }
    if (expression instanceof StaticMethodCallExpression) {
        Map node = [call: expression.method, receiver: null, args: [], named: [:]]
        addArguments(node, expression.arguments)
        return node
    }
    if (expression instanceof ClosureExpression) {
        return [closure: describeStatement(expression.code)]
    }
    if (expression instanceof GStringExpression) {
        return [gstring: expression.text]
    }
    if (expression instanceof ConstantExpression) {
        Object value = expression.value
        boolean plain = value == null || value instanceof String || value instanceof Number || value instanceof Boolean
        return [const: plain ? value : value.toString()]
    }
    if (expression instanceof VariableExpression) {
        return [var: expression.name]
    }
    if (expression instanceof PropertyExpression) {
        return [property: expression.propertyAsString, object: describe(expression.objectExpression)]
    }
    if (expression instanceof BinaryExpression && expression.operation.text == '=') {
        return [assign: describe(expression.leftExpression), value: describe(expression.rightExpression)]
    }
    if (expression instanceof MapExpression) {
        return [map: describeMap(expression)]
    }
    if (expression instanceof ListExpression) {
        return [list: expression.expressions.collect { describe(it) }]
    }
    return [other: expression.getClass().simpleName, text: expression.text]
}

Map describeMap(MapExpression map) {
    Map entries = [:]
    for (MapEntryExpression entry : map.mapEntryExpressions) {
        entries[entry.keyExpression.text] = describe(entry.valueExpression)
    }
    return entries
}

void addArguments(Map node, Expression arguments) {
    List expressions = arguments instanceof TupleExpression ? arguments.expressions : [arguments]
    for (Expression argument : expressions) {
        if (argument instanceof MapExpression) {
            node.named.putAll(describeMap(argument))
        } else {
            node.args << describe(argument)
        }
    }
}

List describeStatement(Statement statement) {
    if (statement == null) {
        return []
    }
    if (statement instanceof BlockStatement) {
        return statement.statements.collectMany { describeStatement(it) }
    }
    if (statement instanceof ExpressionStatement) {
        return [describe(statement.expression)]
    }
    if (statement instanceof ReturnStatement) {
        return [describe(statement.expression)]
    }
    return [[other: statement.getClass().simpleName, text: statement.text]]
}

Map describeFile(String path) {
    File source = new File(path)
    if (!source.isFile()) {
        return [path: path, ok: false, errors: ["file not found: ${path}".toString()], statements: []]
    }
    CompilerConfiguration configuration = new CompilerConfiguration()
    configuration.sourceEncoding = 'UTF-8'
    CompilationUnit unit = new CompilationUnit(configuration)
    unit.addSource(source)
    try {
        unit.compile(Phases.CONVERSION)
    } catch (MultipleCompilationErrorsException failure) {
        return [path: path, ok: false, errors: failure.errorCollector.errors.collect { it.toString() }, statements: []]
    }
    List statements = unit.AST.modules.collectMany { describeStatement(it.statementBlock) }
    return [path: path, ok: true, errors: [], statements: statements]
}

if (args.length == 0) {
    System.err.println('usage: groovy groovy_calls.groovy FILE...')
    System.exit(2)
}

boolean allOk = true
for (String path : args) {
    Map result
    try {
        result = describeFile(path)
    } catch (Exception unexpected) {
        result = [path: path, ok: false, errors: ["failed: ${unexpected}".toString()], statements: []]
    }
    allOk = allOk && result.ok
    println JsonOutput.toJson(result)
}
System.exit(allOk ? 0 : 1)
