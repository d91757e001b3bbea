"""porter.yaml as a source of ServiceIdentityConnections: `import` turns its connections into objects, `export` back."""
